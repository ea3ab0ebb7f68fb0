package backend

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestParseXLA(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "pjrt_c_api_cpu_plugin.so")
	touch(t, plugin)
	t.Chdir(dir)

	x, err := ParseXLA("xla:pjrt_c_api_cpu_plugin.so,tf32,preallocate=false,memory_fraction=0.5,allocator=bfc,collective_memory_size=4")
	if err != nil {
		t.Fatal(err)
	}
	if x.Plugin != plugin {
		t.Errorf("plugin %q, want the absolute %q", x.Plugin, plugin)
	}
	if got := strings.Join(x.GoMLXOptions, ","); got != "tf32,shared_buffers" {
		t.Errorf("GoMLX options %q, want tf32,shared_buffers (a CPU plugin by path shares host buffers)", got)
	}
	want := map[string]any{"preallocate": false, "memory_fraction": float32(0.5), "allocator": "bfc", "collective_memory_size": int64(4)}
	for k, v := range want {
		if x.ClientOptions[k] != v {
			t.Errorf("client option %s = %#v (%T), want %#v (%T)", k, x.ClientOptions[k], x.ClientOptions[k], v, v)
		}
	}
	// "1" and "0" are numbers, not booleans; memory_fraction is a float even when written whole.
	x, err = ParseXLA("xla:pjrt_c_api_cpu_plugin.so,cpu_device_count=1,node_id=0,memory_fraction=1,enable_mock_nccl=True")
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]any{"cpu_device_count": int64(1), "node_id": int64(0), "memory_fraction": float32(1), "enable_mock_nccl": true}
	for k, v := range want {
		if x.ClientOptions[k] != v {
			t.Errorf("client option %s = %#v (%T), want %#v (%T)", k, x.ClientOptions[k], x.ClientOptions[k], v, v)
		}
	}
	x, _ = ParseXLA("xla:pjrt_c_api_cpu_plugin.so,tf32,preallocate=false,memory_fraction=0.5,allocator=bfc,collective_memory_size=4")
	if x.String() != "xla:"+plugin+",tf32,shared_buffers" {
		t.Errorf("String() = %q", x.String())
	}

	if _, err := ParseXLA("xla:" + filepath.Join(dir, "missing.so")); err == nil || !strings.Contains(err.Error(), "missing.so") {
		t.Errorf("a missing plugin file: error %v, want one naming the file", err)
	}
	x, err = ParseXLA("xla:cuda")
	if err != nil || x.Plugin != "cuda" || !x.IsCUDA() || len(x.GoMLXOptions) != 0 {
		t.Errorf("xla:cuda parsed as %+v, %v", x, err)
	}
	x, err = ParseXLA("xla")
	if err != nil || x.Plugin != "" {
		t.Errorf("xla parsed as %+v, %v", x, err)
	}
}

// The CUDA data directory is found in the layout of a pip environment with jax-cuda13-pjrt and
// the nvidia-* packages, and XLA_FLAGS is set only when it names no data directory yet.
func TestCUDADataDir(t *testing.T) {
	site := filepath.Join(t.TempDir(), "lib", "python3.12", "site-packages")
	plugin := filepath.Join(site, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so")
	touch(t, plugin)
	data := filepath.Join(site, "nvidia", "cu13")
	touch(t, filepath.Join(data, "bin", "ptxas"))
	if err := os.MkdirAll(filepath.Join(data, "nvvm", "libdevice"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUDA_DATA_DIR", "")
	t.Setenv("CUDA_HOME", "")
	t.Setenv("CUDA_PATH", "")
	t.Setenv("PATH", "")
	if got := CUDADataDir(plugin); got != data {
		t.Fatalf("CUDADataDir = %q, want %q", got, data)
	}
	if got := CUDADataDir(filepath.Join(t.TempDir(), "a", "b", "x.so")); got != "" && !strings.HasPrefix(got, "/usr/local/cuda") {
		t.Errorf("CUDADataDir without nvidia packages = %q", got)
	}

	Notice = io.Discard
	t.Setenv("GOPJRT_CUDA_CHECKS", "")
	t.Setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
	setCUDAFlags(plugin)
	if got := os.Getenv("XLA_FLAGS"); got != "--xla_dump_to=/tmp/x --xla_gpu_cuda_data_dir="+data {
		t.Errorf("XLA_FLAGS = %q", got)
	}
	if os.Getenv("GOPJRT_CUDA_CHECKS") != "0" {
		t.Errorf("GOPJRT_CUDA_CHECKS not switched off")
	}
	t.Setenv("XLA_FLAGS", "--xla_gpu_cuda_data_dir=/mine")
	setCUDAFlags(plugin)
	if got := os.Getenv("XLA_FLAGS"); got != "--xla_gpu_cuda_data_dir=/mine" {
		t.Errorf("an explicit data dir was overridden: XLA_FLAGS = %q", got)
	}
}

func TestPureGoAndFallback(t *testing.T) {
	Notice = io.Discard
	t.Setenv("GOMLX_BACKEND", "")
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", t.TempDir()) // no plugin anywhere go-xla looks
	t.Chdir(t.TempDir())                              // nor a build/pjrt of this module
	b, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	if !isPureGo(b.Name()) {
		t.Errorf("without any plugin: backend %q, want the pure Go one", Describe(b))
	}
	b, err = New("go")
	if err != nil || !isPureGo(b.Name()) {
		t.Fatalf("New(go) = %v, %v", b, err)
	}
	if _, err := New("xla:/nonexistent/plugin.so"); err == nil {
		t.Errorf("an explicit missing plugin must be an error, not a fallback")
	}
}

// With `make pjrt-cpu` done, "xla:cpu" runs on XLA's CPU plugin from build/pjrt.
func TestXLACPUPlugin(t *testing.T) {
	if !registered("xla") {
		t.Skip("built without the XLA backend")
	}
	if ProjectCPUPlugin() == "" {
		t.Skip("no build/pjrt/" + CPUPluginFile + " (make pjrt-cpu)")
	}
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", "")
	t.Setenv("GOMLX_BACKEND", "")
	b, err := New("xla:cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Finalize()
	if !strings.Contains(Describe(b), ProjectCPUPlugin()) {
		t.Errorf("xla:cpu did not use the project plugin: %s", Describe(b))
	}
	if d, err := New(""); err != nil || !strings.Contains(Describe(d), ProjectCPUPlugin()) {
		t.Errorf("the default did not take the project plugin: %v", err)
	} else {
		d.Finalize()
	}
	// An integer client option written as 1 reaches the plugin as an int64 (it refuses a bool).
	if c, err := New("xla:cpu,cpu_device_count=1"); err != nil {
		t.Errorf("xla:cpu,cpu_device_count=1: %v", err)
	} else {
		c.Finalize()
	}
	e := MustNewExec(b, func(g *Graph) *Node {
		x := Iota(g, shapes.Make(dtypes.Float32, 4, 4), 1)
		return ReduceAllSum(MatMul(x, x))
	})
	// x[i][j] = j, so (x·x)[i][k] = Σj j·k = 6k: rows [0 6 12 18], sum 4·36.
	if got := e.MustExec()[0].Value().(float32); got != 144 {
		t.Errorf("sum(x·x) = %v, want 144", got)
	}
}

func isPureGo(name string) bool { return name == "go" || strings.Contains(name, "(go)") }
