//go:build ((linux && amd64) || darwin) && !noxla

package backend

import "github.com/gomlx/gomlx/backends/xla"

// The XLA backend reads GOMLX_NO_AUTO_INSTALL once, at package init, which runs before any of our
// code can set it; switch the download off directly instead.
func init() { xla.EnableAutoInstall(false) }
