package gradpatch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// fdTol is the largest relative error accepted against central finite differences in float64.
// The functions checked are smooth at the sampled points, so the expected error is rounding
// (~1e-10) plus eps² truncation (~1e-12).
const (
	fdEps = 1e-6
	fdTol = 1e-6
)

type fdCase struct {
	name string
	f    graphFn
	ins  func(rng *rand.Rand) []input
}

func runFD(t *testing.T, cases []fdCase) {
	t.Helper()
	worst := 0.0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i+1), 42))
			res := fdCheck(t, c.f, c.ins(rng), fdEps, fdTol)
			t.Logf("%-40s coords=%4d max rel err=%.2e max abs err=%.2e", c.name, res.checked, res.maxRel, res.maxAbs)
			if res.maxRel > fdTol || math.IsNaN(res.maxRel) {
				t.Errorf("max relative error %.3e > %.0e", res.maxRel, fdTol)
			}
			worst = math.Max(worst, res.maxRel)
		})
	}
	t.Logf("worst relative error over %d cases: %.2e", len(cases), worst)
}

func dg(lc, lb, rc, rb []int) graphFn {
	return func(xs []*Node) *Node { return DotGeneral(xs[0], lc, lb, xs[1], rc, rb) }
}

func einsum(eq string) graphFn {
	return func(xs []*Node) *Node { return Einsum(eq, xs[0], xs[1]) }
}

func two(a, b []int) func(rng *rand.Rand) []input {
	return func(rng *rand.Rand) []input { return []input{randn(rng, a...), randn(rng, b...)} }
}

// dotGeneralCases covers the axis configurations the model produces and the corner cases of the
// rule (batch axes anywhere, several contracting axes paired out of order, no contraction, no free
// axes on one or both sides).
var dotGeneralCases = []fdCase{
	{"matmul [3,4]x[4,5]", dg([]int{1}, nil, []int{0}, nil), two([]int{3, 4}, []int{4, 5})},
	{"linear x[B,T,in].W[out,in]^T", dg([]int{2}, nil, []int{1}, nil), two([]int{2, 3, 4}, []int{5, 4})},
	{"einsum bti,oi->bto", einsum("bti,oi->bto"), two([]int{2, 3, 4}, []int{5, 4})},
	{"einsum bhqd,bhkd->bhqk", einsum("bhqd,bhkd->bhqk"), two([]int{2, 2, 3, 4}, []int{2, 2, 5, 4})},
	{"einsum bhqk,bhkd->bhqd", einsum("bhqk,bhkd->bhqd"), two([]int{2, 2, 3, 5}, []int{2, 2, 5, 4})},
	{"einsum btd,bsd->bts (batch, no heads)", einsum("btd,bsd->bts"), two([]int{2, 3, 4}, []int{2, 5, 4})},
	{"2 contracting axes out of order", dg([]int{3, 1}, nil, []int{0, 1}, nil), two([]int{2, 3, 4, 5}, []int{5, 3, 2})},
	{"batch axis in the middle", dg([]int{2}, []int{1}, []int{0}, []int{1}), two([]int{3, 2, 4}, []int{4, 2, 5})},
	{"batch last, contracting first", dg([]int{0}, []int{2}, []int{1}, []int{0}), two([]int{4, 3, 2}, []int{2, 4, 5})},
	{"batch + 2 contracting permuted", dg([]int{3, 2}, []int{0}, []int{0, 2}, []int{1}), two([]int{2, 3, 4, 5}, []int{5, 2, 4, 3})},
	{"2 batch axes swapped", dg([]int{3}, []int{1, 0}, []int{1}, []int{0, 2}), two([]int{2, 3, 4, 5}, []int{3, 5, 2, 6})},
	{"outer product with batch (no contraction)", dg(nil, []int{0}, nil, []int{0}), two([]int{2, 3}, []int{2, 4})},
	{"vector.vector -> scalar", dg([]int{0}, nil, []int{0}, nil), two([]int{5}, []int{5})},
	{"full contraction of 2 axes -> scalar", dg([]int{0, 1}, nil, []int{1, 0}, nil), two([]int{3, 4}, []int{4, 3})},
	{"batched dot (no free axes)", dg([]int{1}, []int{0}, []int{1}, []int{0}), two([]int{3, 4}, []int{3, 4})},
	{"matrix.vector", dg([]int{1}, nil, []int{0}, nil), two([]int{3, 4}, []int{4})},
	{"vector.matrix", dg([]int{0}, nil, []int{0}, nil), two([]int{4}, []int{4, 3})},
	{"rhs-major operand order (dW^T layout)", dg([]int{0, 1}, nil, []int{0, 1}, nil), two([]int{2, 3, 4}, []int{2, 3, 5})},
}

func TestDotGeneralFiniteDifferences(t *testing.T) { runFD(t, dotGeneralCases) }

func TestDotFiniteDifferences(t *testing.T) {
	dot := func(xs []*Node) *Node { return Dot(xs[0], xs[1]) }
	runFD(t, []fdCase{
		{"Dot vector.vector", dot, two([]int{5}, []int{5})},
		{"Dot matrix.vector", dot, two([]int{3, 5}, []int{5})},
		{"Dot matrix.matrix", dot, two([]int{3, 5}, []int{5, 4})},
		{"MatMul [4,6]x[6,3]", func(xs []*Node) *Node { return MatMul(xs[0], xs[1]) }, two([]int{4, 6}, []int{6, 3})},
	})
}

// oneAwayFrom draws one input whose entries keep at least 0.01 from the given kinks, where
// finite differences would straddle a non-differentiable point.
func oneAwayFrom(dims []int, kinks ...float64) func(rng *rand.Rand) []input {
	return func(rng *rand.Rand) []input {
		in := randn(rng, dims...)
		for i, v := range in.data {
			for _, k := range kinks {
				if math.Abs(v-k) < 0.01 {
					in.data[i] = k + 0.05
				}
			}
		}
		return []input{in}
	}
}

func one(dims ...int) func(rng *rand.Rand) []input {
	return func(rng *rand.Rand) []input { return []input{randn(rng, dims...)} }
}

func onePositive(dims ...int) func(rng *rand.Rand) []input {
	return func(rng *rand.Rand) []input { return []input{positive(rng, dims...)} }
}

func TestSliceFiniteDifferences(t *testing.T) {
	sl := func(specs ...SliceAxisSpec) graphFn {
		return func(xs []*Node) *Node { return Slice(xs[0], specs...) }
	}
	// rotate_half as RoPE writes it: concat(-x2, x1) with x1, x2 the two halves of the last axis.
	rotateHalf := func(xs []*Node) *Node {
		x := xs[0]
		h := x.Shape().Dimensions[x.Rank()-1] / 2
		x1 := SliceAxis(x, -1, AxisRange(0, h))
		x2 := SliceAxis(x, -1, AxisRange(h))
		return Concatenate([]*Node{Neg(x2), x1}, -1)
	}
	runFD(t, []fdCase{
		{"middle range of one axis", sl(AxisRange(), AxisRange(1, 3)), one(3, 5)},
		{"logits[:, :-1]", sl(AxisRange(), AxisRange(0, 4), AxisRange()), one(2, 5, 3)},
		{"labels[:, 1:]", sl(AxisRange(), AxisRange(1)), one(2, 5)},
		{"several axes at once", sl(AxisRange(1, 2), AxisRange(0, 3), AxisRange(2, 4)), one(3, 4, 5)},
		{"single element", sl(AxisElem(2), AxisElem(1)), one(4, 3)},
		{"full (no-op) slice", sl(AxisRange(), AxisRange()), one(2, 3)},
		{"stride 2 from 0", sl(AxisRange().Stride(2)), one(7)},
		{"stride 2 from 1 (odd elements)", sl(AxisRange(1).Stride(2)), one(8)},
		{"stride 3, range, 2 axes", sl(AxisRange(1, 8).Stride(3), AxisRange(0, 3).Stride(2)), one(9, 4)},
		{"rotate_half (RoPE)", rotateHalf, one(2, 3, 8)},
	})
}

func TestRsqrtFiniteDifferences(t *testing.T) {
	rms := func(xs []*Node) *Node { // RMSNorm written with Rsqrt
		x := xs[0]
		ms := ReduceAndKeep(Square(x), ReduceMean, -1)
		return Mul(x, Rsqrt(AddScalar(ms, 1e-5)))
	}
	runFD(t, []fdCase{
		{"Rsqrt(x)", func(xs []*Node) *Node { return Rsqrt(xs[0]) }, onePositive(3, 4)},
		{"RMSNorm x*Rsqrt(mean(x^2)+eps)", rms, one(2, 3, 6)},
	})
}

func TestReduceWindowFiniteDifferences(t *testing.T) {
	sumPool := func(window, strides []int, pads [][2]int) graphFn {
		return func(xs []*Node) *Node {
			return BackendReduceWindow(xs[0], backends.ReduceOpSum, window, strides, nil, nil, pads)
		}
	}
	runFD(t, []fdCase{
		{"CumSum axis -1", func(xs []*Node) *Node { return CumSum(xs[0], -1) }, one(3, 5)},
		{"CumSum axis 0", func(xs []*Node) *Node { return CumSum(xs[0], 0) }, one(4, 3)},
		{"window 3 stride 1 no pad", sumPool([]int{3}, []int{1}, nil), one(7)},
		{"window 2 stride 2", sumPool([]int{2, 1}, []int{2, 1}, nil), one(6, 3)},
		{"window 3 stride 2, uncovered tail", sumPool([]int{3}, []int{2}, nil), one(8)},
		{"window 3 stride 2 pad (1,2)", sumPool([]int{3}, []int{2}, [][2]int{{1, 2}}), one(7)},
		{"window 2x3 strides 2x1 pads", sumPool([]int{2, 3}, []int{2, 1}, [][2]int{{0, 1}, {2, 0}}), one(5, 4)},
		{"big padding (> window)", sumPool([]int{2}, []int{1}, [][2]int{{3, 4}}), one(4)},
	})
}

func TestMissingElementwiseRulesFiniteDifferences(t *testing.T) {
	g := func(fn func(x *Node) *Node) graphFn { return func(xs []*Node) *Node { return fn(xs[0]) } }
	runFD(t, []fdCase{
		{"Expm1", g(Expm1), one(3, 4)},
		{"Clip (Clamp) scalar bounds", g(func(x *Node) *Node {
			return Clip(x, Const(x.Graph(), -0.7), Const(x.Graph(), 0.9))
		}), oneAwayFrom([]int{4, 5}, -0.7, 0.9)},
		{"Clamp differentiable bounds", func(xs []*Node) *Node { return Clamp(xs[0], xs[1], xs[2]) },
			func(rng *rand.Rand) []input {
				lo, x, hi := randn(rng, 3, 4), randn(rng, 3, 4), randn(rng, 3, 4)
				for i := range lo.data {
					lo.data[i] = -math.Abs(lo.data[i]) - 0.05
					hi.data[i] = math.Abs(hi.data[i]) + 0.05
				}
				return []input{lo, x, hi}
			}},
		{"Identity", g(Identity), one(3)},
		{"IsFinite/IsNaN masks", g(func(x *Node) *Node {
			return Mul(ConvertDType(IsFinite(x), x.DType()), Add(x, ConvertDType(IsNaN(x), x.DType())))
		}), one(4, 3)},
		{"ArgMax index times a sum", g(func(x *Node) *Node {
			return Mul(ConvertDType(ArgMax(x, -1), x.DType()), ReduceSum(x, -1))
		}), one(3, 4)},
		{"Floor/Round/Ceil in a product", g(func(x *Node) *Node {
			return Mul(x, Add(Floor(x), Add(Round(x), Ceil(x))))
		}), oneAwayFrom([]int{5}, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5)},
	})
}

// TestTransformerOpsFiniteDifferences checks, with the patch installed, the gradient of every op
// a decoder or vision transformer uses on the Go backend (stock rules included): each must build
// without Pad/DynamicSlice and match finite differences.
func TestTransformerOpsFiniteDifferences(t *testing.T) {
	g := func(fn func(x *Node) *Node) graphFn { return func(xs []*Node) *Node { return fn(xs[0]) } }
	emb := func(xs []*Node) *Node { // embedding lookup
		ids := Const(xs[0].Graph(), [][]int32{{3}, {0}, {3}, {1}})
		return Gather(xs[0], ids)
	}
	takeAlong := func(xs []*Node) *Node { // log-prob of the label, cross-entropy style
		lp := LogSoftmax(xs[0], -1)
		idx := Const(xs[0].Graph(), [][]int32{{0, 2}, {1, 0}, {2, 4}})
		return Gather(lp, idx)
	}
	scatter := func(xs []*Node) *Node {
		idx := Const(xs[0].Graph(), [][]int32{{1}, {0}, {1}})
		return ScatterSum(xs[0], idx, xs[1], false, false)
	}
	cases := []fdCase{
		{"Exp/Log/Tanh/Erf/Sqrt", g(func(x *Node) *Node {
			return Add(Add(Exp(x), Tanh(x)), Add(Erf(x), Add(Log(AddScalar(Square(x), 1)), Sqrt(AddScalar(Square(x), 1)))))
		}), one(3, 4)},
		{"Sigmoid, SiLU, Pow, Abs", g(func(x *Node) *Node {
			return Add(Mul(x, Sigmoid(x)), Add(Pow(AddScalar(Square(x), 1), Const(x.Graph(), 1.5)), Abs(x)))
		}), one(3, 4)},
		{"Max/Min (ReLU, clip by scalar)", g(func(x *Node) *Node { return Add(Max(x, ZerosLike(x)), MinScalar(x, 0.3)) }),
			oneAwayFrom([]int{3, 4}, 0, 0.3)},
		// The masked value is -5, not the -1e9 the model uses: a 1e9 term in the loss would drown
		// the finite differences in rounding. The decoder block test uses -1e9 behind a softmax.
		{"mask from comparison: (x>0)*x", g(func(x *Node) *Node {
			return Mul(ConvertDType(GreaterThan(x, ZerosLike(x)), x.DType()), x)
		}), oneAwayFrom([]int{4, 3}, 0)},
		{"Where with mask", g(func(x *Node) *Node {
			mask := GreaterThan(Iota(x.Graph(), shapes.Make(dtypes.Int32, 3, 4), 1), Iota(x.Graph(), shapes.Make(dtypes.Int32, 3, 4), 0))
			return Where(mask, Const(x.Graph(), -5.0), x)
		}), one(3, 4)},
		{"ReduceMax/ReduceSum/ReduceMean", g(func(x *Node) *Node {
			return Add(ReduceMax(x, -1), Add(ReduceSum(x, 0), ReduceMean(x, 1)))
		}), one(4, 4)},
		{"Softmax over keys", g(func(x *Node) *Node { return Softmax(x, -1) }), one(2, 3, 5)},
		{"Concatenate", func(xs []*Node) *Node { return Concatenate([]*Node{xs[0], xs[1]}, 1) }, two([]int{2, 3}, []int{2, 2})},
		{"Reshape/Transpose/BroadcastInDim", g(func(x *Node) *Node {
			y := TransposeAllAxes(Reshape(x, 2, 3, 2), 2, 0, 1)
			return Mul(BroadcastToDims(InsertAxes(ReduceSum(x, 0), 0), 4, 6), ReduceAllSum(y))
		}), one(2, 6)},
		{"Gather (embedding)", emb, one(5, 3)},
		{"Gather (take along axis)", takeAlong, one(3, 5)},
		{"ScatterSum", scatter, two([]int{2, 4}, []int{3, 4})},
		{"GELU tanh + erf", g(func(x *Node) *Node {
			tanhGelu := Mul(MulScalar(x, 0.5), OnePlus(Tanh(MulScalar(Add(x, MulScalar(Mul(x, Square(x)), 0.044715)), math.Sqrt(2/math.Pi)))))
			erfGelu := Mul(MulScalar(x, 0.5), OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))))
			return Add(tanhGelu, erfGelu)
		}), one(3, 4)},
	}
	runFD(t, cases)

	// Which of these build with the stock rules alone (none of them should need the patch, except
	// through Slice/Rsqrt, which they do not use).
	for _, c := range cases {
		ins := c.ins(rand.New(rand.NewPCG(5, 5)))
		var err error
		withStock(func() { err = catchPanic(func() { analyticGrads(t, c.f, ins) }) })
		if err != nil {
			t.Logf("%-36s stock rules: FAIL %s", c.name, firstLine(err.Error()))
		}
	}

	// ConvertDType rounds to float32, so finite differences need a large step and a loose bound:
	// the function is linear, so a 1e-2 step has no truncation error.
	t.Run("ConvertDType f64->f32->f64", func(t *testing.T) {
		f := g(func(x *Node) *Node {
			return ConvertDType(MulScalar(ConvertDType(x, dtypes.Float32), 2), dtypes.Float64)
		})
		res := fdCheck(t, f, one(3, 4)(rand.New(rand.NewPCG(9, 9))), 1e-2, 1e-4)
		t.Logf("ConvertDType: max rel err=%.2e", res.maxRel)
		if res.maxRel > 1e-4 {
			t.Errorf("max relative error %.3e", res.maxRel)
		}
	})
}

// decoderBlock is a small pre-norm decoder block that exercises every patched rule together:
// RMSNorm with Rsqrt, linear layers as x·Wᵀ (DotGeneral), RoPE's rotate_half (Slice), attention
// einsums with batch axes, a causal Where mask, softmax, an erf-GELU MLP, and logits[:, :-1].
func decoderBlock(xs []*Node) *Node {
	x, wq, wk, wv, wo, w1, w2 := xs[0], xs[1], xs[2], xs[3], xs[4], xs[5], xs[6]
	g := x.Graph()
	b, tt, d := x.Shape().Dimensions[0], x.Shape().Dimensions[1], x.Shape().Dimensions[2]
	const heads = 2
	hd := d / heads
	linear := func(x, w *Node) *Node { return Einsum("btd,od->bto", x, w) }
	norm := func(x *Node) *Node {
		return Mul(x, Rsqrt(AddScalar(ReduceAndKeep(Square(x), ReduceMean, -1), 1e-5)))
	}
	splitHeads := func(x *Node) *Node { return TransposeAllAxes(Reshape(x, b, tt, heads, hd), 0, 2, 1, 3) }
	rope := func(x *Node) *Node { // [b,h,t,hd]; fixed angles
		pos := ConvertDType(Iota(g, shapes.Make(dtypes.Int32, tt, hd/2), 0), dtypes.Float64)
		freq := ConvertDType(Iota(g, shapes.Make(dtypes.Int32, tt, hd/2), 1), dtypes.Float64)
		ang := Mul(pos, Exp(MulScalar(freq, -0.5)))
		ang = BroadcastPrefix(Concatenate([]*Node{ang, ang}, -1), b, heads)
		x1 := SliceAxis(x, -1, AxisRange(0, hd/2))
		x2 := SliceAxis(x, -1, AxisRange(hd/2))
		rot := Concatenate([]*Node{Neg(x2), x1}, -1)
		return Add(Mul(x, Cos(ang)), Mul(rot, Sin(ang)))
	}
	h := norm(x)
	q, k, v := rope(splitHeads(linear(h, wq))), rope(splitHeads(linear(h, wk))), splitHeads(linear(h, wv))
	scores := MulScalar(Einsum("bhqd,bhkd->bhqk", q, k), 1/math.Sqrt(float64(hd)))
	causal := GreaterOrEqual(Iota(g, shapes.Make(dtypes.Int32, tt, tt), 0), Iota(g, shapes.Make(dtypes.Int32, tt, tt), 1))
	scores = Where(BroadcastPrefix(causal, b, heads), scores, Const(g, -1e9))
	att := Einsum("bhqk,bhkd->bhqd", Softmax(scores, -1), v)
	att = Reshape(TransposeAllAxes(att, 0, 2, 1, 3), b, tt, d)
	x = Add(x, linear(att, wo))
	h = norm(x)
	u := linear(h, w1)
	u = Mul(MulScalar(u, 0.5), OnePlus(Erf(MulScalar(u, 1/math.Sqrt2))))
	x = Add(x, linear(u, w2))
	return SliceAxis(x, 1, AxisRange(0, tt-1))
}

func TestDecoderBlockFiniteDifferences(t *testing.T) {
	runFD(t, []fdCase{{"decoder block (all rules together)", decoderBlock, func(rng *rand.Rand) []input {
		const b, tt, d, f = 2, 4, 8, 12
		scaled := func(in input, s float64) input {
			for i := range in.data {
				in.data[i] *= s
			}
			return in
		}
		w := 1 / math.Sqrt(d)
		return []input{randn(rng, b, tt, d),
			scaled(randn(rng, d, d), w), scaled(randn(rng, d, d), w), scaled(randn(rng, d, d), w), scaled(randn(rng, d, d), w),
			scaled(randn(rng, f, d), w), scaled(randn(rng, d, f), 1/math.Sqrt(f))}
	}}})
}

// TestPatchedEqualsStock compares the patched gradients with the stock ones wherever the stock
// rule builds on the Go backend (DotGeneral and Dot; the others cannot build without the patch).
func TestPatchedEqualsStock(t *testing.T) {
	cases := append([]fdCase{
		{"Dot matrix.matrix", func(xs []*Node) *Node { return Dot(xs[0], xs[1]) }, two([]int{3, 5}, []int{5, 4})},
		{"Dot matrix.vector", func(xs []*Node) *Node { return Dot(xs[0], xs[1]) }, two([]int{3, 5}, []int{5})},
		{"Dot vector.vector", func(xs []*Node) *Node { return Dot(xs[0], xs[1]) }, two([]int{5}, []int{5})},
	}, dotGeneralCases...)
	worst := 0.0
	for i, c := range cases {
		rng := rand.New(rand.NewPCG(uint64(100+i), 1))
		ins := c.ins(rng)
		patched := analyticGrads(t, c.f, ins)
		var stockG [][]float64
		withStock(func() { stockG = analyticGrads(t, c.f, ins) })
		for k := range patched {
			for j := range patched[k] {
				a, s := patched[k][j], stockG[k][j]
				rel := math.Abs(a-s) / math.Max(math.Max(math.Abs(a), math.Abs(s)), 1e-12)
				if a == s {
					rel = 0
				}
				worst = math.Max(worst, rel)
				if rel > 1e-12 {
					t.Errorf("%s: input #%d[%d]: patched %g, stock %g", c.name, k, j, a, s)
					break
				}
			}
		}
	}
	t.Logf("%d cases: worst relative difference patched vs stock %.2e", len(cases), worst)
}

// largestNode returns the element count of the largest node in the graph built by fn.
func largestNode(tb testing.TB, fn func(g *Graph)) int {
	tb.Helper()
	g := NewGraph(testBackend(tb), "inspect")
	defer g.Finalize()
	fn(g)
	biggest := 0
	for _, n := range g.Nodes() {
		if n.NumOutputs() == 1 {
			biggest = max(biggest, n.Shape().Size())
		}
	}
	return biggest
}

// TestNoMKNIntermediate asserts the structural fix: with the patch, the gradient of an
// [M,K]·[K,N] product contains no node larger than its largest operand or output, while the stock
// rule builds an [M,K,N] node.
func TestNoMKNIntermediate(t *testing.T) {
	const m, k, n = 16, 32, 24
	build := func(g *Graph) {
		x := Parameter(g, "x", shapes.Make(dtypes.Float32, m, k))
		w := Parameter(g, "w", shapes.Make(dtypes.Float32, k, n))
		x3 := Parameter(g, "x3", shapes.Make(dtypes.Float32, 2, m, k))
		loss := Add(ReduceAllSum(Einsum("mk,kn->mn", x, w)), ReduceAllSum(Dot(x, w)))
		loss = Add(loss, ReduceAllSum(Einsum("bmk,nk->bmn", x3, Transpose(w, 0, 1))))
		Gradient(loss, x, w, x3)
	}
	patched := largestNode(t, build)
	var stockSize int
	withStock(func() { stockSize = largestNode(t, build) })
	t.Logf("largest node: patched %d elements, stock %d elements (M·K·N = %d)", patched, stockSize, m*k*n)
	if patched > 2*m*k {
		t.Errorf("patched gradient has a node of %d elements, more than the operands (%d)", patched, 2*m*k)
	}
	if stockSize < m*k*n {
		t.Logf("note: the stock rule no longer builds an [M,K,N] node; the DotGeneral patch may be unnecessary")
	}
}

// TestStockGaps documents what the stock v0.26 rules cannot build on the Go backend and that the
// patch fixes each one. If gomlx changes (it is pinned), the message says which patch to revisit.
func TestStockGaps(t *testing.T) {
	scalarGrad := func(f func(x *Node) *Node) func(g *Graph) {
		return func(g *Graph) {
			x := Parameter(g, "x", shapes.Make(dtypes.Float64, 4, 6))
			Gradient(ReduceAllSum(f(x)), x)
		}
	}
	gaps := []struct {
		name string
		fn   func(g *Graph)
	}{
		{"Slice (Pad)", scalarGrad(func(x *Node) *Node { return SliceAxis(x, 1, AxisRange(1, 3)) })},
		{"strided Slice (Pad)", scalarGrad(func(x *Node) *Node { return SliceAxis(x, 1, AxisRange(0).Stride(2)) })},
		{"CumSum (ReduceWindow -> Pad)", scalarGrad(func(x *Node) *Node { return Square(CumSum(x, -1)) })},
		{"Rsqrt (no rule)", scalarGrad(func(x *Node) *Node { return Rsqrt(AddScalar(Square(x), 1)) })},
		{"Expm1 (no rule)", scalarGrad(Expm1)},
		{"Clip/Clamp (no rule)", scalarGrad(func(x *Node) *Node { return Clip(x, Const(x.Graph(), -0.5), Const(x.Graph(), 0.5)) })},
		{"Identity (no rule)", scalarGrad(Identity)},
		{"Floor", scalarGrad(func(x *Node) *Node { return Mul(Floor(x), x) })},
		{"Ceil", scalarGrad(func(x *Node) *Node { return Mul(Ceil(x), x) })},
		{"Round", scalarGrad(func(x *Node) *Node { return Mul(Round(x), x) })},
		{"IsFinite", scalarGrad(func(x *Node) *Node { return Mul(ConvertDType(IsFinite(x), x.DType()), x) })},
		{"IsNaN", scalarGrad(func(x *Node) *Node { return Mul(ConvertDType(IsNaN(x), x.DType()), x) })},
		{"ArgMax", scalarGrad(func(x *Node) *Node { return Mul(ConvertDType(ArgMax(x, -1), x.DType()), ReduceSum(x, -1)) })},
	}
	for _, gap := range gaps {
		run := func() error {
			return catchPanic(func() {
				g := NewGraph(testBackend(t), gap.name)
				defer g.Finalize()
				gap.fn(g)
				g.Compile(g.LastNode())
			})
		}
		var stockErr error
		withStock(func() { stockErr = run() })
		if err := run(); err != nil {
			t.Errorf("%s: patched gradient fails: %v", gap.name, err)
		}
		if stockErr == nil {
			t.Logf("%s: the stock rule builds now; this patch may be unnecessary", gap.name)
		} else {
			t.Logf("%-32s stock: %s", gap.name, firstLine(stockErr.Error()))
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 110 {
		s = s[:110] + "…"
	}
	return s
}

// TestReflectionMatchesString cross-checks the parameters read by reflection against the
// node's own String(), which prints them: a drift in gomlx's field layout shows up here.
func TestReflectionMatchesString(t *testing.T) {
	g := NewGraph(testBackend(t), "reflect")
	defer g.Finalize()
	a := Parameter(g, "a", shapes.Make(dtypes.Float32, 2, 3, 4, 5))
	b := Parameter(g, "b", shapes.Make(dtypes.Float32, 5, 2, 4, 3))
	d := DotGeneral(a, []int{3, 2}, []int{0}, b, []int{0, 2}, []int{1})
	ax := dotGeneralAxes(d)
	want := fmt.Sprintf("lhsContractingAxes=%v, lhsBatchAxes=%v, rhs=[#%d], rhsContractingAxes=%v, rhsBatchAxes=%v",
		ax.lhsContracting, ax.lhsBatch, b.Id(), ax.rhsContracting, ax.rhsBatch)
	if !strings.Contains(d.String(), want) || fmt.Sprint(ax) != "{[3 2] [0] [0 2] [1]}" {
		t.Errorf("DotGeneral: reflection read %+v, node prints %s", ax, d.String())
	}
	s := Slice(a, AxisRange(1), AxisRange(0, 2), AxisRange(1, 4).Stride(2), AxisRange())
	sp := sliceParamsOf(s)
	if want := fmt.Sprintf("starts=%v, limits=%v, strides=%v", sp.starts, sp.limits, sp.strides); !strings.Contains(s.String(), want) ||
		fmt.Sprint(sp) != "{[1 0 1 0] [2 2 4 5] [1 1 2 1]}" {
		t.Errorf("Slice: reflection read %+v, node prints %s", sp, s.String())
	}
	c := CumSum(a, 1)
	wp := windowParamsOf(c)
	if backends.ReduceOpType(wp.reduction) != backends.ReduceOpSum || fmt.Sprint(wp.window) != "[1 3 1 1]" ||
		fmt.Sprint(wp.paddings) != "[[0 0] [2 0] [0 0] [0 0]]" {
		t.Errorf("ReduceWindow: reflection read %+v, node prints %s", wp, c.String())
	}
}

func TestInstallIdempotent(t *testing.T) {
	if !Installed() {
		t.Fatal("TestMain should have installed the rules")
	}
	Install()
	Install()
	for _, nt := range Patched() {
		if VJPRegistration[nt] == nil {
			t.Errorf("%s: no rule registered", nt)
		}
	}
	Uninstall()
	if Installed() {
		t.Error("Installed() after Uninstall")
	}
	if _, ok := VJPRegistration[NodeTypeRsqrt]; ok {
		t.Error("Uninstall left the Rsqrt rule, which v0.26 does not have")
	}
	if VJPRegistration[NodeTypeDotGeneral] == nil {
		t.Error("Uninstall removed the stock DotGeneral rule")
	}
	Install()
	if !Installed() {
		t.Error("Install after Uninstall did not reinstall")
	}
	t.Logf("patched node types: %v", Patched())
}

// TestBFloat16 checks that the patched rules build and run in bfloat16 (the frozen weights' dtype)
// and agree with the float64 gradient of the same bf16-rounded values to bf16 precision.
func TestBFloat16(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	ins := []input{randn(rng, 2, 3, 8), randn(rng, 6, 8)}
	for _, in := range ins { // round to bf16 so both runs see the same values
		for i, v := range in.data {
			in.data[i] = float64(bfloat16.FromFloat32(float32(v)).Float32())
		}
	}
	f := func(dtype dtypes.DType) graphFn {
		return func(xs []*Node) *Node {
			x, w := ConvertDType(xs[0], dtype), ConvertDType(xs[1], dtype)
			y := Einsum("btd,od->bto", x, w)
			y = Mul(y, Rsqrt(AddScalar(ReduceAndKeep(Square(y), ReduceMean, -1), 1e-5)))
			return SliceAxis(y, 1, AxisRange(0, 2))
		}
	}
	ref := analyticGrads(t, f(dtypes.Float64), ins)
	got := analyticGrads(t, f(dtypes.BFloat16), ins)
	worst := 0.0
	for k := range ref {
		scale := 0.0
		for _, v := range ref[k] {
			scale = math.Max(scale, math.Abs(v))
		}
		for j := range ref[k] {
			worst = math.Max(worst, math.Abs(ref[k][j]-got[k][j])/scale)
		}
	}
	t.Logf("bf16 vs f64 gradients: max error relative to the largest entry %.2e", worst)
	if worst > 5e-2 {
		t.Errorf("bf16 gradient off by %.2e of its scale", worst)
	}
}
