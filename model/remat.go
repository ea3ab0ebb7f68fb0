package model

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Remat is gradient checkpointing: a layer run through it keeps only its input for the backward
// pass and recomputes its activations there. GoMLX v0.26 has no rematerialisation and XLA no
// optimisation barrier we can emit, so the layer is cut out of autodiff and given rules of its
// own:
//
//	in  = identity of x whose rule adds the dx the recomputation found
//	y   = f(in)                                   (the forward pass; nothing of it is kept)
//	out = sg(y) + (u − sg(u)),  u = identity of 0·in₀ broadcast to y's shape
//
// out's value is f(x). Its adjoint dy reaches u's rule, which rebuilds f on x' = sg(x) + 0·dy₀
// and differentiates ⟨f(x'), dy⟩ for x' and the layer's trainable variables; in's rule, which
// autodiff runs later (in comes first in the graph), hands dx on. Everything the recomputation
// reads that the forward pass also computed is made to depend on dy: the layer input, the
// float32 masters and quantized weights it casts or dequantizes to the compute dtype, and the
// RNG state (so dropout draws the same masks). XLA can then neither run it early nor merge it
// with the forward pass by common-subexpression elimination, and the forward's activations,
// casts and random bits die with the forward. In the forward pass the same casts, dequantizations
// and random bits depend on x, so that XLA cannot hoist every layer's to the start and hold them.
// The variables' gradients are collected here and added by Gradient.
type Remat struct {
	dtype dtypes.DType // the compute dtype: variables stored in another one are cast
	grads map[*context.Variable]*Node
}

// NewRemat makes the checkpointing state of one graph computing in dtype.
func NewRemat(dtype dtypes.DType) *Remat {
	return &Remat{dtype: dtype, grads: map[*context.Variable]*Node{}}
}

// layer returns f(x), checkpointed when r is not nil. ctx is the layer's scope: the variables
// under it are those f may use; the trainable ones get gradients.
func (r *Remat) layer(ctx *context.Context, x *Node, f func(x *Node) *Node) *Node {
	if r == nil {
		return f(x)
	}
	g := x.Graph()
	var trained, recast []*context.Variable
	ctx.EnumerateVariablesInScope(func(v *context.Variable) {
		if v.Trainable {
			trained = append(trained, v)
		}
		if v.Trainable || v.DType() != r.dtype {
			// Trained masters are cast to the compute dtype, quantized weights dequantized:
			// both must be redone in the backward pass, not kept from the forward one.
			recast = append(recast, v)
		}
	})
	rng := ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
	var rngStart *Node
	if rng != nil {
		// Through x as well: the masks' random bits depend on no activation, and XLA would
		// otherwise be free to draw every layer's bits at the start and hold them all.
		rngStart = after(rng.ValueGraph(g), x)
		rng.SetValueGraph(rngStart)
	}

	var dx *Node // found by the recomputation, handed on by in's rule
	in := x
	if len(trained) > 0 {
		// u must lie on a path from a trainable variable, or autodiff would never call its rule
		// when nothing before the layer trains (a text-only batch, a frozen vision tower).
		in = after(x, trained[0].ValueGraph(g))
	}
	in = IdentityWithCustomGradient(in, func(_, v *Node) *Node {
		if dx == nil {
			return v
		}
		return Add(v, dx)
	})
	// The forward pass casts and dequantizes through x too: these depend on no activation, and
	// XLA would otherwise do every layer's at the start and hold them all (the whole model
	// dequantized to bf16 under QLoRA).
	values := make([]*Node, len(recast))
	for i, v := range recast {
		values[i] = v.ValueGraph(g)
		v.SetValueGraph(after(values[i], x))
	}
	y := f(in)
	for i, v := range recast {
		v.SetValueGraph(values[i])
	}
	if rng == nil && ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName) != nil {
		panic("model: a checkpointed layer created the RNG state; seed it before building the graph")
	}
	zero := BroadcastToDims(ConvertDType(MulScalar(ConvertDType(firstElement(in), dtypes.Float32), 0), y.DType()), y.Shape().Dimensions...)
	u := IdentityWithCustomGradient(zero, func(_, dy *Node) *Node {
		dy = StopGradient(dy)
		xr := after(StopGradient(x), dy)
		if rng != nil {
			end := rng.ValueGraph(g)
			rng.SetValueGraph(after(rngStart, dy)) // the forward's state, reached through dy
			defer rng.SetValueGraph(end)
		}
		for i, v := range recast {
			v.SetValueGraph(after(values[i], dy))
		}
		wrt := []*Node{xr}
		for _, v := range trained {
			wrt = append(wrt, v.ValueGraph(g))
		}
		yr := f(xr)
		for i, v := range recast {
			v.SetValueGraph(values[i])
		}
		grads := Gradient(ReduceAllSum(Mul(yr, dy)), wrt...)
		dx = grads[0]
		for i, v := range trained {
			if prev, ok := r.grads[v]; ok {
				r.grads[v] = Add(prev, grads[i+1])
			} else {
				r.grads[v] = grads[i+1]
			}
		}
		// Zero, but not a constant: XLA would constant-fold the reduction of a y-sized zero
		// tensor that carries it back to in, for minutes per layer.
		return MulScalar(dy, 0)
	})
	return Add(StopGradient(y), Sub(u, StopGradient(u)))
}

// Gradient is graph.Gradient(loss, wrt...) plus what checkpointed layers contributed to each
// variable's gradient. wrt are the variables' value nodes, vars the variables.
func (r *Remat) Gradient(loss *Node, vars []*context.Variable) []*Node {
	g := loss.Graph()
	wrt := make([]*Node, len(vars))
	for i, v := range vars {
		wrt[i] = v.ValueGraph(g)
	}
	grads := Gradient(loss, wrt...)
	if r == nil {
		return grads
	}
	for i, v := range vars {
		if extra, ok := r.grads[v]; ok {
			grads[i] = Add(grads[i], ConvertDType(extra, grads[i].DType()))
		}
	}
	return grads
}

// after returns v unchanged, computed as v + 0·d₀ so that it depends on d: XLA cannot evaluate
// it before d exists nor merge it with v itself. (It folds 0·a only for integers, since 0·NaN
// is NaN; for integer v the zero is a converted float.) d₀ is d's first element.
func after(v, d *Node) *Node {
	zero := MulScalar(ConvertDType(firstElement(d), dtypes.Float32), 0)
	return Add(v, ConvertDType(zero, v.DType()))
}

// firstElement is x's first element as a scalar: a cheap data dependency.
func firstElement(x *Node) *Node {
	specs := make([]SliceAxisSpec, x.Rank())
	for i := range specs {
		specs[i] = AxisElem(0)
	}
	return Reshape(Slice(x, specs...))
}
