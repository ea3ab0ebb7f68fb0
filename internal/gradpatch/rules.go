package gradpatch

import (
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // graph code reads best unqualified.
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// single adapts a rule for a single-output node to graph.VJP.
func single(fn func(node, v *Node) []*Node) VJP {
	return func(node *Node, vjps []*Node, _ shapes.Shape) []*Node { return fn(node, vjps[0]) }
}

// ---------------------------------------------------------------------------------------------
// DotGeneral and Dot.
//
// For out = DotGeneral(lhs, lc, lb, rhs, rc, rb) the output axes are
//   [batch..., lhs free axes (ascending)..., rhs free axes (ascending)...]
// where "free" (cross) axes are those neither contracted nor batch.
//
// The gradient for one operand ("this") contracts the adjoint v over the *other* operand's free
// axes, keeping the batch axes:
//   dThis[b, thisFree, thisContr] = Σ_otherFree v[b, thisFree, otherFree] · other[b, otherFree, otherContr]
// which is itself a DotGeneral (a GEMM per batch, e.g. dX = V·Wᵀ, dW = Xᵀ·V). Its output comes out
// as [batch, thisFree, otherContr] or [batch, otherContr, thisFree] depending on operand order;
// one transpose puts it in this operand's layout, and the order is chosen so that the common
// cases (linear layers, attention) need no transpose at all. Memory is O(size of the operand),
// never O(M·K·N).
// ---------------------------------------------------------------------------------------------

func dotGeneralVJP(node, v *Node) []*Node {
	in := node.Inputs()
	return dotGrads(in[0], in[1], dotGeneralAxes(node), v)
}

// dotVJP handles the Dot node (graph.Dot / graph.MatMul for ranks ≤ 2), whose stock rule has the
// same [M,K,N] blow-up. Dot is DotGeneral with fixed dimension numbers, so it is mapped to them.
func dotVJP(node, v *Node) []*Node {
	in := node.Inputs()
	lhs, rhs := in[0], in[1]
	var ax dotAxes
	switch {
	case lhs.Rank() == 1 && rhs.Rank() == 1: // vector · vector -> scalar
		ax = dotAxes{lhsContracting: []int{0}, rhsContracting: []int{0}}
	case lhs.Rank() == 2 && (rhs.Rank() == 1 || rhs.Rank() == 2): // matrix · vector | matrix
		ax = dotAxes{lhsContracting: []int{1}, rhsContracting: []int{0}}
	default:
		panic(fmt.Sprintf("gradpatch: Dot with operand ranks %d and %d is not a Dot GoMLX builds", lhs.Rank(), rhs.Rank()))
	}
	return dotGrads(lhs, rhs, ax, v)
}

func dotGrads(lhs, rhs *Node, ax dotAxes, v *Node) []*Node {
	lFree := freeAxes(lhs.Rank(), ax.lhsContracting, ax.lhsBatch)
	rFree := freeAxes(rhs.Rank(), ax.rhsContracting, ax.rhsBatch)
	nb := len(ax.lhsBatch)
	vBatch := seq(0, nb)
	vL := seq(nb, len(lFree))
	vR := seq(nb+len(lFree), len(rFree))

	lhsSide := side{rank: lhs.Rank(), batch: ax.lhsBatch, contr: ax.lhsContracting, free: lFree, vFree: vL, node: lhs}
	rhsSide := side{rank: rhs.Rank(), batch: ax.rhsBatch, contr: ax.rhsContracting, free: rFree, vFree: vR, node: rhs}
	return []*Node{
		operandGrad(lhsSide, rhsSide, v, vBatch, true),
		operandGrad(rhsSide, lhsSide, v, vBatch, false),
	}
}

// side describes one DotGeneral operand: its batch, contracting and free axes, and where its
// free axes sit in the output (vFree).
type side struct {
	rank                      int
	batch, contr, free, vFree []int
	node                      *Node
}

// operandGrad returns v·∂out/∂this. vFirst is the preferred operand order (v first gives
// [batch, thisFree, otherContr], natural for lhs; other first gives [batch, otherContr, thisFree],
// natural for rhs); the other order is used instead when it needs no transpose and the preferred
// one does.
func operandGrad(this, other side, v *Node, vBatch []int, vFirst bool) *Node {
	nb := len(this.batch)
	// Rank of each of other's contracting axes among other's free-in-the-gradient axes, which the
	// gradient DotGeneral leaves in ascending axis order.
	sortedContr := slices.Clone(other.contr)
	slices.Sort(sortedContr)
	rankOf := func(axis int) int { return slices.Index(sortedContr, axis) }

	permFor := func(vIsFirst bool) []int {
		perm := make([]int, this.rank)
		for i, a := range this.batch {
			perm[a] = i
		}
		for j, a := range this.free {
			if vIsFirst {
				perm[a] = nb + j
			} else {
				perm[a] = nb + len(other.contr) + j
			}
		}
		for i, a := range this.contr {
			r := rankOf(other.contr[i])
			if vIsFirst {
				perm[a] = nb + len(this.free) + r
			} else {
				perm[a] = nb + r
			}
		}
		return perm
	}
	useVFirst := vFirst
	if !isIdentity(permFor(vFirst)) && isIdentity(permFor(!vFirst)) {
		useVFirst = !vFirst
	}

	var out *Node
	if len(other.free) == 0 {
		// Nothing to contract: the gradient is an outer product (with batch) whose size is that of
		// this operand, so a broadcast multiply is already optimal and avoids a DotGeneral without
		// contracting axes.
		out = batchedOuter(v, len(vBatch), other, useVFirst)
	} else if useVFirst {
		out = DotGeneral(v, other.vFree, vBatch, other.node, other.free, other.batch)
	} else {
		out = DotGeneral(other.node, other.free, other.batch, v, other.vFree, vBatch)
	}
	if perm := permFor(useVFirst); !isIdentity(perm) {
		out = TransposeAllAxes(out, perm...)
	}
	return out
}

// batchedOuter computes, without contraction, the tensor laid out exactly as DotGeneral would:
// [batch, vFree..., otherContr (ascending)...] if vIsFirst, else [batch, otherContr..., vFree...].
func batchedOuter(v *Node, nb int, other side, vIsFirst bool) *Node {
	oContr := slices.Clone(other.contr)
	slices.Sort(oContr)
	// other -> [batch, contr ascending]
	o := TransposeAllAxes(other.node, append(slices.Clone(other.batch), oContr...)...)
	// v is [batch, thisFree] here: the other operand has no free axes, so v's axes are exactly
	// batch followed by this operand's free axes.
	nv, no := v.Rank()-nb, o.Rank()-nb
	if vIsFirst {
		vv := InsertAxes(v, slices.Repeat([]int{-1}, no)...) // [b, vFree, 1...]
		oo := InsertAxes(o, slices.Repeat([]int{nb}, nv)...) // [b, 1..., contr]
		shape := outerShape(v, o, nb, true)
		return Mul(BroadcastToShape(vv, shape), BroadcastToShape(oo, shape))
	}
	oo := InsertAxes(o, slices.Repeat([]int{-1}, nv)...) // [b, contr, 1...]
	vv := InsertAxes(v, slices.Repeat([]int{nb}, no)...) // [b, 1..., vFree]
	shape := outerShape(v, o, nb, false)
	return Mul(BroadcastToShape(oo, shape), BroadcastToShape(vv, shape))
}

func outerShape(v, o *Node, nb int, vIsFirst bool) shapes.Shape {
	dims := slices.Clone(v.Shape().Dimensions[:nb])
	if vIsFirst {
		dims = append(dims, v.Shape().Dimensions[nb:]...)
		dims = append(dims, o.Shape().Dimensions[nb:]...)
	} else {
		dims = append(dims, o.Shape().Dimensions[nb:]...)
		dims = append(dims, v.Shape().Dimensions[nb:]...)
	}
	return shapes.Make(v.DType(), dims...)
}

// freeAxes lists, ascending, the axes that are neither contracting nor batch.
func freeAxes(rank int, contracting, batch []int) []int {
	used := make([]bool, rank)
	for _, a := range contracting {
		used[a] = true
	}
	for _, a := range batch {
		used[a] = true
	}
	var out []int
	for a, u := range used {
		if !u {
			out = append(out, a)
		}
	}
	return out
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

func isIdentity(perm []int) bool {
	for i, p := range perm {
		if i != p {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------------------------
// Slice.
//
// The adjoint of a slice is v placed back where the slice came from, zeros elsewhere. The stock
// rule does that with Pad, which the Go backend lacks; here each sliced axis gets zero blocks
// concatenated before and after it, and strided axes first get (stride-1) zeros interleaved after
// each element (Reshape + Concatenate), then are trimmed to the input length.
// ---------------------------------------------------------------------------------------------

func sliceVJP(node, v *Node) []*Node {
	x := node.Inputs()[0]
	p := sliceParamsOf(node)
	g := node.Graph()
	if v.Shape().Size() == 0 {
		return []*Node{Zeros(g, x.Shape())}
	}
	grad := v
	for axis, dim := range x.Shape().Dimensions {
		start, stride := p.starts[axis], p.strides[axis]
		if stride > 1 {
			grad = interleaveZeros(grad, axis, stride)
			// Interleaving leaves m·stride entries, the last stride-1 of them zeros; trim those
			// that would run past the end of the input.
			if start+grad.Shape().Dimensions[axis] > dim {
				grad = SliceAxis(grad, axis, AxisRange(0, dim-start))
			}
		}
		after := dim - start - grad.Shape().Dimensions[axis]
		if start == 0 && after == 0 {
			continue
		}
		parts := make([]*Node, 0, 3)
		if start > 0 {
			parts = append(parts, zerosAlong(grad, axis, start))
		}
		parts = append(parts, grad)
		if after > 0 {
			parts = append(parts, zerosAlong(grad, axis, after))
		}
		grad = Concatenate(parts, axis)
	}
	return []*Node{grad}
}

// zerosAlong returns zeros shaped like x except for size n on axis.
func zerosAlong(x *Node, axis, n int) *Node {
	s := x.Shape().Clone()
	s.Dimensions[axis] = n
	return Zeros(x.Graph(), s)
}

// interleaveZeros turns length m on axis into m·stride, element i landing at i·stride and zeros
// in between: [.., m, ..] -> [.., m, 1, ..] ++ zeros [.., m, stride-1, ..] -> [.., m·stride, ..].
func interleaveZeros(x *Node, axis, stride int) *Node {
	expanded := InsertAxes(x, axis+1)
	withZeros := Concatenate([]*Node{expanded, zerosAlong(expanded, axis+1, stride-1)}, axis+1)
	dims := slices.Clone(x.Shape().Dimensions)
	dims[axis] *= stride
	return Reshape(withZeros, dims...)
}

// ---------------------------------------------------------------------------------------------
// ReduceWindow (sum), e.g. CumSum and SumPool.
//
// Per axis, with window w, stride s, padding (lo, hi), input length n and output length m:
//   out[o] = Σ_{k<w} xpad[o·s + k],  xpad[p] = x[p - lo]
// so x[i] receives v[o] for every o with i + lo - w < o·s ≤ i + lo. Dilating v by s (base
// dilation, holes = 0) gives vd[j] with j = o·s, and then
//   dx[i] = Σ_{j = i+lo-w+1}^{i+lo} vd[j]
// which is itself a stride-1 ReduceWindow-sum over vd with padding (w-1-lo, n+w-1-len(vd)-(w-1-lo)).
// Negative paddings are avoided by padding at least 0 and slicing the surplus afterwards. No Pad
// is needed. Max/min reductions and window dilations fall back to the stock rule.
// ---------------------------------------------------------------------------------------------

func reduceWindowVJP(node, v *Node) []*Node {
	p := windowParamsOf(node)
	if backends.ReduceOpType(p.reduction) != backends.ReduceOpSum || anyAbove1(p.windowDilations) || anyAbove1(p.baseDilations) {
		if fn := stockRule(NodeTypeReduceWindow); fn != nil {
			return fn(node, []*Node{v}, shapes.Make(v.DType()))
		}
		panic(fmt.Sprintf("gradpatch: no gradient for ReduceWindow(%s) with dilations", backends.ReduceOpType(p.reduction)))
	}
	x := node.Inputs()[0]
	rank := x.Rank()
	if v.Shape().Size() == 0 {
		return []*Node{ZerosLike(x)}
	}
	strides := ones(rank, p.strides)
	paddings := make([][2]int, rank)
	trimStart := make([]int, rank)
	dilate := false
	for axis := 0; axis < rank; axis++ {
		n, m, w, s := x.Shape().Dimensions[axis], v.Shape().Dimensions[axis], p.window[axis], strides[axis]
		lo := 0
		if len(p.paddings) > 0 {
			lo = p.paddings[axis][0]
		}
		if s > 1 {
			dilate = true
		}
		ld := (m-1)*s + 1
		plo := w - 1 - lo
		phi := n + w - 1 - ld - plo
		plo2, phi2 := max(plo, 0), max(phi, 0)
		paddings[axis] = [2]int{plo2, phi2}
		trimStart[axis] = plo2 - plo
	}
	var baseDil []int
	if dilate {
		baseDil = strides
	}
	grad := BackendReduceWindow(v, backends.ReduceOpSum, p.window, ones(rank, nil), baseDil, nil, paddings)
	if !grad.Shape().Equal(x.Shape()) {
		specs := make([]SliceAxisSpec, rank)
		for axis := range specs {
			specs[axis] = AxisRange(trimStart[axis], trimStart[axis]+x.Shape().Dimensions[axis])
		}
		grad = Slice(grad, specs...)
	}
	return []*Node{grad}
}

func anyAbove1(xs []int) bool {
	for _, x := range xs {
		if x > 1 {
			return true
		}
	}
	return false
}

// ones returns xs if given, else rank ones (ReduceWindow's default for strides/dilations).
func ones(rank int, xs []int) []int {
	if len(xs) == rank {
		return xs
	}
	out := make([]int, rank)
	for i := range out {
		out[i] = 1
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// Element-wise rules missing from v0.26.
// ---------------------------------------------------------------------------------------------

// rsqrtVJP: d/dx x^(-1/2) = -1/2 · x^(-3/2) = -1/2 · rsqrt(x)/x, reusing the forward output.
func rsqrtVJP(node, v *Node) []*Node {
	x := node.Inputs()[0]
	return []*Node{Mul(v, MulScalar(Div(node, x), -0.5))}
}

// expm1VJP: d/dx (e^x - 1) = e^x = expm1(x) + 1, reusing the forward output.
func expm1VJP(node, v *Node) []*Node {
	return []*Node{Mul(v, AddScalar(node, 1))}
}

// identityVJP: a plain Identity passes the adjoint through (StopGradient and custom gradients are
// handled by graph.Gradient before the table is consulted).
func identityVJP(_, v *Node) []*Node { return []*Node{v} }

// zeroVJP: piecewise-constant ops have zero derivative almost everywhere; nil tells
// graph.Gradient there is nothing to propagate.
func zeroVJP(node, _ *Node) []*Node { return make([]*Node, len(node.Inputs())) }

// clampVJP for Clamp(min, x, max) (what graph.Clip builds): the adjoint goes to x where
// min ≤ x ≤ max, otherwise to the bound that the output took. min and max may be scalars or have
// x's shape; their adjoints are summed back to their own shapes.
func clampVJP(node, v *Node) []*Node {
	in := node.Inputs()
	lo, x, hi := in[0], in[1], in[2]
	if !x.Shape().Equal(node.Shape()) {
		panic(fmt.Sprintf("gradpatch: gradient of Clamp with x %s broadcast to %s is not supported", x.Shape(), node.Shape()))
	}
	loB, hiB := broadcastTo(lo, node.Shape()), broadcastTo(hi, node.Shape())
	zeros := ZerosLike(v)
	inside := LogicalAnd(GreaterOrEqual(x, loB), LessOrEqual(x, hiB))
	toHi := LogicalAnd(LogicalNot(inside), Equal(node, hiB))
	toLo := LogicalAnd(LogicalNot(inside), LogicalNot(toHi))
	return []*Node{
		sumToShape(Where(toLo, v, zeros), lo.Shape()),
		Where(inside, v, zeros),
		sumToShape(Where(toHi, v, zeros), hi.Shape()),
	}
}

func broadcastTo(x *Node, s shapes.Shape) *Node {
	if x.Shape().Equal(s) {
		return x
	}
	return BroadcastToShape(x, s)
}

// sumToShape reduces an adjoint of a broadcast result back to the shape of the broadcast input
// (a scalar, or the same rank with size-1 axes).
func sumToShape(g *Node, s shapes.Shape) *Node {
	if g.Shape().Equal(s) {
		return g
	}
	if s.IsScalar() {
		return ReduceAllSum(g)
	}
	if s.Rank() != g.Rank() {
		panic(fmt.Sprintf("gradpatch: cannot reduce adjoint %s to %s", g.Shape(), s))
	}
	var axes []int
	for a, d := range s.Dimensions {
		if d == 1 && g.Shape().Dimensions[a] != 1 {
			axes = append(axes, a)
		}
	}
	return Reshape(ReduceSum(g, axes...), s.Dimensions...)
}
