// Package backend starts the GoMLX backend every command and test uses.
//
// It chooses, in order: the configuration given explicitly (a config file's `backend` key), then
// $GOMLX_BACKEND, then XLA with whatever PJRT plugin is installed, and it falls back to the pure Go
// backend with a one-line notice when no plugin can be loaded. It never lets go-xla download
// plugins: the machines this toolkit runs on are often offline, and a silent download at start-up
// is not something a training job should do.
package backend

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/default" // registers "go" and, with cgo, "xla".
)

// PureGo is the pure Go backend configuration we use everywhere: unlimited op parallelism,
// because the default parallelism deadlocks on backward graphs that hold many independent
// large matmuls (each waits for workers the others hold).
const PureGo = "go:parallelism=-1"

// Notice is where the one-line fallback notice goes; tests may silence it.
var Notice io.Writer = os.Stderr

var (
	mu       sync.Mutex
	shared   backends.Backend
	sharedOf string
)

// New starts a backend for config ("" means: $GOMLX_BACKEND, else XLA if a plugin loads, else
// the pure Go backend). An explicitly named XLA config that fails is an error, not a fallback:
// a user who asked for the GPU must not silently train on the CPU.
func New(config string) (backends.Backend, error) {
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	explicit := config != ""
	if config == "" {
		config = os.Getenv(backends.ConfigEnvVar)
		explicit = config != ""
	}
	if config == "" {
		config = "xla"
	}
	name, _, _ := strings.Cut(config, ":")
	if name == "go" {
		config = normalizeGo(config)
	}
	if !registered(name) {
		if explicit {
			return nil, fmt.Errorf("backend %q is not compiled into this binary (available: %s); build with cgo for XLA or use %q", config, strings.Join(backends.List(), ", "), PureGo)
		}
		return backends.NewWithConfig(PureGo)
	}
	b, err := backends.NewWithConfig(config)
	if err == nil {
		return b, nil
	}
	if explicit {
		return nil, fmt.Errorf("backend %q: %w (set GOMLX_BACKEND=xla:/abs/path/to/pjrt_plugin.so, or %s for the pure Go backend)", config, err, PureGo)
	}
	fmt.Fprintf(Notice, "notice: no PJRT plugin found (%v); using the pure Go backend %q\n", firstLine(err), PureGo)
	return backends.NewWithConfig(PureGo)
}

// Shared returns one process-wide backend for config, started on first use.
func Shared(config string) (backends.Backend, error) {
	mu.Lock()
	defer mu.Unlock()
	if shared != nil && sharedOf == config {
		return shared, nil
	}
	b, err := New(config)
	if err != nil {
		return nil, err
	}
	shared, sharedOf = b, config
	return b, nil
}

// normalizeGo adds parallelism=-1 to a pure Go configuration that does not set its scheduling.
func normalizeGo(config string) string {
	if strings.Contains(config, "parallelism") || strings.Contains(config, "ops_sequential") {
		return config
	}
	if config == "go" {
		return PureGo
	}
	return config + ",parallelism=-1"
}

func registered(name string) bool {
	for _, n := range backends.List() {
		if n == name {
			return true
		}
	}
	return false
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
