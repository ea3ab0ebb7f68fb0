package gradpatch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // the pure Go backend only: these tests must pass without XLA.
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// pureGo is the pure Go backend configuration used project-wide: unlimited op parallelism, because
// the default parallelism deadlocks on backward graphs with many independent large matmuls.
const pureGo = "go:parallelism=-1"

func TestMain(m *testing.M) {
	// The benchmark measures peak memory in a fresh child process of this same binary.
	if mode := os.Getenv(benchChildEnv); mode != "" {
		os.Exit(benchChild(mode))
	}
	Install()
	os.Exit(m.Run())
}

var (
	backendOnce sync.Once
	backendVal  backends.Backend
	backendErr  error
)

// testBackend returns the pure Go backend ($GOMLX_BACKEND if it names a "go" configuration).
func testBackend(tb testing.TB) backends.Backend {
	tb.Helper()
	backendOnce.Do(func() {
		cfg := os.Getenv(backends.ConfigEnvVar)
		if !strings.HasPrefix(cfg, "go") {
			cfg = pureGo
		}
		backendVal, backendErr = backends.NewWithConfig(cfg)
	})
	if backendErr != nil {
		tb.Fatalf("backend: %v", backendErr)
	}
	return backendVal
}

// input is a float64 tensor given on the host.
type input struct {
	dims []int
	data []float64
}

func size(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

func randn(rng *rand.Rand, dims ...int) input {
	d := make([]float64, size(dims))
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return input{dims: dims, data: d}
}

// positive draws from [0.5, 2.5): for Rsqrt, Log, Sqrt.
func positive(rng *rand.Rand, dims ...int) input {
	d := make([]float64, size(dims))
	for i := range d {
		d[i] = 0.5 + 2*rng.Float64()
	}
	return input{dims: dims, data: d}
}

func (in input) tensor(delta int, eps float64) *tensors.Tensor {
	d := in.data
	if delta >= 0 {
		d = append([]float64(nil), in.data...)
		d[delta] += eps
	}
	return tensors.FromFlatDataAndDimensions(d, in.dims...)
}

// weighted turns f's output into a scalar loss Σ y·R with a fixed pseudo-random R, so every output
// element contributes with a different weight (a plain sum would hide errors that cancel).
func weighted(y *Node) *Node {
	rng := rand.New(rand.NewPCG(7, uint64(y.Shape().Size())))
	r := make([]float64, y.Shape().Size())
	for i := range r {
		r[i] = rng.NormFloat64()
	}
	y = ConvertDType(y, dtypes.Float64)
	rt := tensors.FromFlatDataAndDimensions(r, y.Shape().Dimensions...)
	return ReduceAllSum(Mul(y, Const(y.Graph(), rt)))
}

// graphFn builds the tested function from the differentiable inputs.
type graphFn func(xs []*Node) *Node

// analyticGrads runs graph.Gradient of weighted(f) w.r.t. every input.
func analyticGrads(tb testing.TB, f graphFn, ins []input) [][]float64 {
	tb.Helper()
	exec := MustNewExec(testBackend(tb), func(xs []*Node) []*Node {
		return Gradient(weighted(f(xs)), xs...)
	})
	defer exec.Finalize()
	args := make([]any, len(ins))
	for i, in := range ins {
		args[i] = in.tensor(-1, 0)
	}
	outs := exec.MustExec(args...)
	grads := make([][]float64, len(outs))
	for i, o := range outs {
		grads[i] = tensors.MustCopyFlatData[float64](o)
		o.MustFinalizeAll()
	}
	return grads
}

// fdResult is the outcome of one finite-difference check.
type fdResult struct {
	maxRel, maxAbs float64
	checked        int
	reported       int
}

// fdCheck compares graph.Gradient with central finite differences (float64, step eps) on every
// coordinate of every input; the first few entries above tol are logged. The relative error of an entry is |a-n| / max(|a|, |n|, 1e-3·M) with
// M the largest gradient magnitude of that input, so entries that are exactly zero both ways
// count as 0 and tiny entries are judged on the tensor's scale instead of their own.
func fdCheck(tb testing.TB, f graphFn, ins []input, eps, tol float64) fdResult {
	tb.Helper()
	grads := analyticGrads(tb, f, ins)
	loss := MustNewExec(testBackend(tb), func(xs []*Node) *Node { return weighted(f(xs)) })
	defer loss.Finalize()
	eval := func(which, coord int, e float64) float64 {
		args := make([]any, len(ins))
		for i, in := range ins {
			if i == which {
				args[i] = in.tensor(coord, e)
			} else {
				args[i] = in.tensor(-1, 0)
			}
		}
		out := loss.MustExec(args...)[0]
		defer out.MustFinalizeAll()
		return tensors.MustCopyFlatData[float64](out)[0]
	}
	var res fdResult
	for i, in := range ins {
		if len(grads[i]) != len(in.data) {
			tb.Fatalf("input #%d: gradient has %d entries, input %d", i, len(grads[i]), len(in.data))
		}
		scale := 0.0
		for _, g := range grads[i] {
			scale = math.Max(scale, math.Abs(g))
		}
		for j := range in.data {
			num := (eval(i, j, eps) - eval(i, j, -eps)) / (2 * eps)
			a := grads[i][j]
			diff := math.Abs(a - num)
			rel := diff / math.Max(math.Max(math.Abs(a), math.Abs(num)), math.Max(1e-3*scale, 1e-300))
			if diff == 0 {
				rel = 0
			}
			if rel > tol && res.reported < 3 {
				res.reported++
				tb.Logf("input #%d[%d] (x=%g): analytic %.10g, finite differences %.10g", i, j, in.data[j], a, num)
			}
			res.maxRel = math.Max(res.maxRel, rel)
			res.maxAbs = math.Max(res.maxAbs, diff)
			res.checked++
		}
	}
	return res
}

// catchPanic runs fn and returns its panic, if any, as an error.
func catchPanic(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	fn()
	return nil
}

// withStock runs fn with the stock GoMLX rules, restoring ours afterwards.
func withStock(fn func()) {
	Uninstall()
	defer Install()
	fn()
}
