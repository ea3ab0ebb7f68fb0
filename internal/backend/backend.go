// Package backend starts the GoMLX backend every command and test uses.
//
// It chooses, in order: the configuration given explicitly (a config file's `backend` key), then
// $GOMLX_BACKEND, then XLA with whatever PJRT plugin is installed (go-xla's search paths, then the
// CPU plugin `make pjrt-cpu` puts in build/pjrt), and it falls back to the pure Go
// backend with a one-line notice when no plugin can be loaded. It never lets go-xla download
// plugins: the machines this toolkit runs on are often offline, and a silent download at start-up
// is not something a training job should do.
//
// Configuration strings are GoMLX's ("go", "go:parallelism=-1", "xla:cpu", "xla:cuda",
// "xla:/abs/path/plugin.so") with three additions:
//
//   - a plugin given as a path may be relative ("xla:build/pjrt/pjrt_c_api_cpu_plugin.so"); it is
//     made absolute, and a missing file is an error naming it;
//   - "xla:cpu" also finds the plugin that `make pjrt-cpu` installs under build/pjrt of this
//     module when go-xla's own search finds none;
//   - options of the form key=value after the plugin are PJRT client options
//     ("xla:/p/xla_cuda_plugin.so,preallocate=false,memory_fraction=0.8,allocator=bfc"); true/false
//     are booleans, whole numbers int64 (memory_fraction always a float), other numbers float32,
//     everything else a string.
//
// For a CUDA plugin it sets XLA_FLAGS=--xla_gpu_cuda_data_dir=<dir> itself (a directory holding
// bin/ptxas and nvvm/libdevice) unless XLA_FLAGS already names one: go-xla v0.1.4 otherwise
// writes a hard-coded path of its author's machine there.
package backend

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/default" // registers "go" and, with cgo, "xla".
)

// PureGo is the pure Go backend configuration we use everywhere: unlimited op parallelism,
// because the default parallelism deadlocks on backward graphs that hold many independent
// large matmuls (each waits for workers the others hold).
const PureGo = "go:parallelism=-1"

// CPUPluginFile is the file name `make pjrt-cpu` installs under build/pjrt.
const CPUPluginFile = "pjrt_c_api_cpu_plugin.so"

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
	var b backends.Backend
	var err error
	if isXLA(name) {
		var x XLAConfig
		x, err = ParseXLA(config)
		if err == nil {
			b, err = newXLA(x)
		}
		// "xla" without a plugin name also takes the plugin `make pjrt-cpu` installed.
		if err != nil && x.Plugin == "" && os.Getenv("PJRT_PLUGIN_LIBRARY_PATH") == "" {
			if p := ProjectCPUPlugin(); p != "" {
				x.Plugin = p
				x.GoMLXOptions = append(x.GoMLXOptions, "shared_buffers")
				b, err = newXLA(x)
			}
		}
	} else {
		b, err = backends.NewWithConfig(config)
	}
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

// XLAConfig is a parsed "xla:..." configuration.
type XLAConfig struct {
	Plugin        string         // "", a plugin name ("cpu", "cuda") or an absolute path
	GoMLXOptions  []string       // options GoMLX understands: shared_buffers, noshared_buffers, tf32
	ClientOptions map[string]any // PJRT client options (key=value)
}

// String is the configuration GoMLX gets (without the client options).
func (x XLAConfig) String() string {
	s := "xla:" + x.Plugin
	for _, o := range x.GoMLXOptions {
		s += "," + o
	}
	return s
}

// IsCUDA reports whether the plugin is NVIDIA's (by name, as go-xla decides it).
func (x XLAConfig) IsCUDA() bool {
	u := strings.ToUpper(x.Plugin)
	return strings.Contains(u, "CUDA") || strings.Contains(u, "NVIDIA")
}

// ParseXLA parses "xla:<plugin>[,option...]" (also "xla" alone), resolving a plugin path to an
// absolute one and "cpu" to the project's build/pjrt plugin when go-xla's search paths hold none.
func ParseXLA(config string) (XLAConfig, error) {
	var x XLAConfig
	_, rest, _ := strings.Cut(config, ":")
	parts := strings.Split(rest, ",")
	x.Plugin = strings.TrimSpace(parts[0])
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			x.GoMLXOptions = append(x.GoMLXOptions, p)
			continue
		}
		if x.ClientOptions == nil {
			x.ClientOptions = map[string]any{}
		}
		k = strings.TrimSpace(k)
		x.ClientOptions[k] = typedValue(k, strings.TrimSpace(v))
	}
	switch {
	case strings.Contains(x.Plugin, "/") || strings.HasSuffix(x.Plugin, ".so"):
		abs, err := filepath.Abs(x.Plugin)
		if err != nil {
			return x, err
		}
		if _, err := os.Stat(abs); err != nil {
			return x, fmt.Errorf("PJRT plugin %s: %w", abs, err)
		}
		x.Plugin = abs
	case x.Plugin == "cpu" && os.Getenv("PJRT_PLUGIN_LIBRARY_PATH") == "" && !cpuPluginInSearchPath():
		if p := ProjectCPUPlugin(); p != "" {
			x.Plugin = p
		}
	}
	// GoMLX shares host buffers only with a plugin named exactly "cpu"; a CPU plugin given by
	// path gets the same (it saves one copy of every weight).
	if filepath.IsAbs(x.Plugin) && strings.Contains(strings.ToLower(filepath.Base(x.Plugin)), "cpu") &&
		!hasOption(x.GoMLXOptions, "shared_buffers") && !hasOption(x.GoMLXOptions, "noshared_buffers") {
		x.GoMLXOptions = append(x.GoMLXOptions, "shared_buffers")
	}
	return x, nil
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// floatOptions are the PJRT client options whose value the plugins check as a float: a whole
// number written for one ("memory_fraction=1") must still go as a float, or the plugin refuses it.
var floatOptions = map[string]bool{"memory_fraction": true}

// typedValue types a client option's value the way PJRT checks it: "true"/"false" are booleans,
// whole numbers int64, other numbers float32, the rest strings. "1" and "0" stay numbers
// (strconv.ParseBool would take them as booleans, and an integer option such as
// cpu_device_count=1 would then be refused).
func typedValue(key, v string) any {
	if floatOptions[key] {
		if f, err := strconv.ParseFloat(v, 32); err == nil {
			return float32(f)
		}
		return v
	}
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	}
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return i
	}
	if f, err := strconv.ParseFloat(v, 32); err == nil {
		return float32(f)
	}
	return v
}

// ProjectCPUPlugin returns build/pjrt/pjrt_c_api_cpu_plugin.so of the module that contains the
// working directory (what `make pjrt-cpu` installs), or "" when there is none.
func ProjectCPUPlugin() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/idefics2/idefics2\n") {
			p := filepath.Join(dir, "build", "pjrt", CPUPluginFile)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// cpuPluginInSearchPath reports whether go-xla's default directories hold a CPU plugin.
func cpuPluginInSearchPath() bool {
	home, _ := os.UserHomeDir()
	dirs := []string{filepath.Join(home, ".local/lib/go-xla"), filepath.Join(home, ".local/lib/gomlx/pjrt"),
		"/usr/local/lib/go-xla", "/usr/local/lib/gomlx/pjrt"}
	for _, d := range dirs {
		for _, n := range []string{"pjrt_c_api_cpu_plugin.so", "pjrt-plugin-cpu.so", "pjrt_plugin_cpu.so"} {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				return true
			}
		}
	}
	return false
}

// CUDADataDir finds a directory holding bin/ptxas and nvvm/libdevice for XLA's GPU compiler:
// $CUDA_DATA_DIR, the nvidia-* Python packages next to a plugin that lives in site-packages
// (site-packages/nvidia/{cu13,cu12,cuda_nvcc}), $CUDA_HOME, $CUDA_PATH, the directory above the
// ptxas on $PATH, and /usr/local/cuda*. It returns "" when none qualifies.
func CUDADataDir(pluginPath string) string {
	var cands []string
	add := func(d string) {
		if d != "" {
			cands = append(cands, d)
		}
	}
	add(os.Getenv("CUDA_DATA_DIR"))
	if pluginPath != "" {
		// .../site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so -> .../site-packages
		site := filepath.Dir(filepath.Dir(filepath.Dir(pluginPath)))
		for _, sub := range []string{"cu13", "cu12", "cuda_nvcc", "cuda_nvcc/cu13"} {
			add(filepath.Join(site, "nvidia", sub))
		}
		add(filepath.Join(filepath.Dir(filepath.Dir(pluginPath)), "nvidia")) // go-xla installer layout
	}
	add(os.Getenv("CUDA_HOME"))
	add(os.Getenv("CUDA_PATH"))
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "ptxas")); err == nil {
			add(filepath.Dir(d))
		}
	}
	add("/usr/local/cuda")
	if m, _ := filepath.Glob("/usr/local/cuda-*"); len(m) > 0 {
		cands = append(cands, m...)
	}
	for _, d := range cands {
		if IsCUDADataDir(d) {
			return d
		}
	}
	return ""
}

// IsCUDADataDir reports whether d holds bin/ptxas and nvvm/libdevice.
func IsCUDADataDir(d string) bool {
	if _, err := os.Stat(filepath.Join(d, "bin", "ptxas")); err != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(d, "nvvm", "libdevice"))
	return err == nil && fi.IsDir()
}

// setCUDAFlags points XLA at a CUDA data directory unless XLA_FLAGS already names one.
func setCUDAFlags(pluginPath string) {
	flags := os.Getenv("XLA_FLAGS")
	if strings.Contains(flags, "--xla_gpu_cuda_data_dir") {
		return
	}
	dir := CUDADataDir(pluginPath)
	if dir == "" {
		fmt.Fprintf(Notice, "notice: no CUDA data directory (bin/ptxas + nvvm/libdevice) found; set XLA_FLAGS=--xla_gpu_cuda_data_dir=<dir> or CUDA_DATA_DIR if XLA fails to compile\n")
		// Still keep go-xla from writing its hard-coded path.
		if os.Getenv("GOPJRT_CUDA_CHECKS") == "" {
			os.Setenv("GOPJRT_CUDA_CHECKS", "0")
		}
		return
	}
	os.Setenv("XLA_FLAGS", strings.TrimSpace(flags+" --xla_gpu_cuda_data_dir="+dir))
	if os.Getenv("GOPJRT_CUDA_CHECKS") == "" {
		os.Setenv("GOPJRT_CUDA_CHECKS", "0") // we handled the data directory; silence go-xla's guess
	}
}

// Describe names the backend and its first device in one line.
func Describe(b backends.Backend) string {
	if b == nil {
		return ""
	}
	s := b.Name() + ": " + b.Description()
	if b.NumDevices() > 0 {
		if d := b.DeviceDescription(0); d != "" && !strings.HasPrefix(d, "device#") {
			s += "; device 0: " + d
		}
	}
	return s
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

func isXLA(name string) bool {
	switch name {
	case "xla", "stablehlo", "hlo", "shlo":
		return true
	}
	return false
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
