package gradpatch

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The benchmark measures forward+backward (gradients w.r.t. x and W) of y = x·W with x
// [256×1024] and W [1024×1024] in float32, with the stock and the patched rules.
//
// Each configuration runs in a fresh child process (this test binary re-executed with
// benchChildEnv set), because peak RSS (VmHWM) is per process and only meaningful when nothing
// else ran before: the stock rule allocates gigabytes that the Go runtime keeps afterwards.
//
//	go test -run '^$' -bench MatMulFwdBwd -benchtime 1x ./internal/gradpatch/
//
// Reported metrics: ns/op is the median step time (after a first, compiling, call), peak-RSS-MB
// the process peak, peak-over-inputs-MB the growth of the peak after the inputs were created.
const benchChildEnv = "GRADPATCH_BENCH_CHILD"

type benchResult struct {
	Mode        string  `json:"mode"`
	Op          string  `json:"op"`
	FirstCallMS float64 `json:"first_call_ms"`
	MedianMS    float64 `json:"median_ms"`
	Steps       int     `json:"steps"`
	BaseRSSMB   float64 `json:"base_rss_mb"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
	GoHeapMB    float64 `json:"go_heap_mb"`
}

func BenchmarkMatMulFwdBwd(b *testing.B) {
	for _, op := range []string{"dotgeneral", "dot"} {
		for _, mode := range []string{"stock", "patched"} {
			b.Run(op+"/"+mode, func(b *testing.B) {
				steps := max(2, min(b.N, 5))
				res := runBenchChild(b, mode, op, steps)
				b.ReportMetric(res.MedianMS*1e6, "ns/op")
				b.ReportMetric(res.FirstCallMS, "first-call-ms")
				b.ReportMetric(res.PeakRSSMB, "peak-RSS-MB")
				b.ReportMetric(res.PeakRSSMB-res.BaseRSSMB, "peak-over-inputs-MB")
				b.Logf("%s %s: first call %.0f ms, median step %.0f ms over %d, peak RSS %.0f MB (%.0f MB over inputs)",
					op, mode, res.FirstCallMS, res.MedianMS, res.Steps, res.PeakRSSMB, res.PeakRSSMB-res.BaseRSSMB)
			})
		}
	}
}

func runBenchChild(b *testing.B, mode, op string, steps int) benchResult {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+mode, "GRADPATCH_BENCH_OP="+op, "GRADPATCH_BENCH_STEPS="+strconv.Itoa(steps))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child %s/%s: %v\n%s", op, mode, err, out)
	}
	var res benchResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "GRADPATCH_BENCH_RESULT "); ok {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				b.Fatal(err)
			}
			return res
		}
	}
	b.Fatalf("child %s/%s printed no result:\n%s", op, mode, out)
	return res
}

// benchChild runs in the child process; it returns the exit code.
func benchChild(mode string) int {
	if err := benchChildRun(mode); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	return 0
}

func benchChildRun(mode string) error {
	switch mode {
	case "patched":
		Install()
	case "stock":
		Uninstall()
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	op := os.Getenv("GRADPATCH_BENCH_OP")
	steps, _ := strconv.Atoi(os.Getenv("GRADPATCH_BENCH_STEPS"))
	steps = max(steps, 1)
	cfg := os.Getenv(backends.ConfigEnvVar)
	if !strings.HasPrefix(cfg, "go") {
		cfg = pureGo
	}
	backend, err := backends.NewWithConfig(cfg)
	if err != nil {
		return err
	}
	const m, k, n = 256, 1024, 1024
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(size int) []float32 {
		d := make([]float32, size)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		return d
	}
	x := tensors.FromFlatDataAndDimensions(fill(m*k), m, k)
	w := tensors.FromFlatDataAndDimensions(fill(k*n), k, n)
	runtime.GC()
	base := vmHWM()

	exec := MustNewExec(backend, func(x, w *Node) (*Node, *Node, *Node) {
		var y *Node
		if op == "dot" {
			y = Dot(x, w)
		} else {
			y = Einsum("mk,kn->mn", x, w)
		}
		loss := ReduceAllMean(Square(y))
		grads := Gradient(loss, x, w)
		return loss, grads[0], grads[1]
	})
	step := func() time.Duration {
		start := time.Now()
		outs := exec.MustExec(x, w)
		elapsed := time.Since(start)
		for _, o := range outs {
			o.MustFinalizeAll()
		}
		return elapsed
	}
	first := step()
	times := make([]time.Duration, steps)
	for i := range times {
		times[i] = step()
	}
	slices.Sort(times)
	res := benchResult{
		Mode: mode, Op: op, Steps: steps,
		FirstCallMS: ms(first), MedianMS: ms(times[len(times)/2]),
		BaseRSSMB: float64(base) / 1e6, PeakRSSMB: float64(vmHWM()) / 1e6,
		GoHeapMB: float64(goHeapBytes()) / 1e6,
	}
	js, _ := json.Marshal(res)
	fmt.Println("GRADPATCH_BENCH_RESULT " + string(js))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// vmHWM is the process' peak resident set size in bytes (Linux; 0 elsewhere).
func vmHWM() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// goHeapBytes is the memory the Go runtime currently holds for heap objects and free spans,
// from runtime/metrics: a lower bound of what the backend retains after the steps.
func goHeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	var total uint64
	for _, x := range s {
		if x.Value.Kind() == metrics.KindUint64 {
			total += x.Value.Uint64()
		}
	}
	return total
}
