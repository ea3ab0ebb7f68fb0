//go:build !(((linux && amd64) || darwin) && !noxla)

package backend

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
)

// newXLA is never reached without the XLA backend (New checks registration first).
func newXLA(x XLAConfig) (backends.Backend, error) {
	return nil, fmt.Errorf("this binary was built without the XLA backend (cgo and the noxla tag)")
}
