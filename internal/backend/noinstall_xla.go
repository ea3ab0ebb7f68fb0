//go:build ((linux && amd64) || darwin) && !noxla

package backend

import (
	"strings"

	"github.com/gomlx/go-xla/pkg/pjrt"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/xla"
)

// The XLA backend reads GOMLX_NO_AUTO_INSTALL once, at package init, which runs before any of our
// code can set it; switch the download off directly instead.
func init() { xla.EnableAutoInstall(false) }

// newXLA starts the XLA backend for x, with its PJRT client options.
func newXLA(x XLAConfig) (backends.Backend, error) {
	if x.IsCUDA() {
		setCUDAFlags(x.Plugin)
	}
	var opts pjrt.NamedValuesMap
	if len(x.ClientOptions) > 0 {
		opts = pjrt.NamedValuesMap(x.ClientOptions)
	}
	_, rest, _ := strings.Cut(x.String(), ":")
	return xla.NewWithOptions(rest, opts)
}
