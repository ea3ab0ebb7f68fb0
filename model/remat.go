package model

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Remat is gradient checkpointing: a layer run through it keeps only its input for the backward
// pass and recomputes its activations there. GoMLX v0.26 has no rematerialisation and XLA no
// optimisation barrier we can emit, so the layer is cut out of autodiff and given a rule of its
// own:
//
//	out = sg(f(x)) + (t − sg(t)),  t = identity of x with a custom gradient
//
// The forward value is f(x) (t − sg(t) is exactly zero); the adjoint dy of out reaches t's rule,
// which rebuilds f on x' = sg(x) + 0·dy₀ and differentiates ⟨f(x'), dy⟩ for x' and the layer's
// trainable variables. x' depends on dy, so XLA can neither run the recompute early nor merge
// it with the forward by common-subexpression elimination; the forward's activations die with
// the forward. The RNG state is rewound (also through dy) so dropout draws the same masks.
// The variables' gradients are collected here and added by Gradient.
type Remat struct {
	grads map[*context.Variable]*Node
}

// NewRemat makes the checkpointing state of one graph.
func NewRemat() *Remat { return &Remat{grads: map[*context.Variable]*Node{}} }

// layer returns f(x), checkpointed when r is not nil. ctx is the layer's scope: the trainable
// variables under it are those f may use.
func (r *Remat) layer(ctx *context.Context, x *Node, f func(x *Node) *Node) *Node {
	if r == nil {
		return f(x)
	}
	g := x.Graph()
	var vars []*context.Variable
	ctx.EnumerateVariablesInScope(func(v *context.Variable) {
		if v.Trainable {
			vars = append(vars, v)
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
	y := f(x)
	if rng == nil && ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName) != nil {
		panic("model: a checkpointed layer created the RNG state; seed it before building the graph")
	}
	if !y.Shape().Equal(x.Shape()) {
		panic(fmt.Sprintf("model: checkpointed layer %s maps %s to %s; it must keep the shape", ctx.Scope(), x.Shape(), y.Shape()))
	}
	in := x
	if len(vars) > 0 {
		// t must lie on a path from a trainable variable, or autodiff would never call its rule
		// when nothing before the layer trains (a text-only batch, a frozen connector).
		in = after(x, vars[0].ValueGraph(g))
	}
	t := IdentityWithCustomGradient(in, func(_, dy *Node) *Node {
		xr := after(StopGradient(x), StopGradient(dy))
		if rng != nil {
			end := rng.ValueGraph(g)
			// The same state as the forward, reached through dy.
			rng.SetValueGraph(after(rngStart, StopGradient(dy)))
			defer rng.SetValueGraph(end)
		}
		yr := f(xr)
		wrt := []*Node{xr}
		for _, v := range vars {
			wrt = append(wrt, v.ValueGraph(g))
		}
		grads := Gradient(ReduceAllSum(Mul(yr, StopGradient(dy))), wrt...)
		for i, v := range vars {
			if prev, ok := r.grads[v]; ok {
				r.grads[v] = Add(prev, grads[i+1])
			} else {
				r.grads[v] = grads[i+1]
			}
		}
		return grads[0]
	})
	return Add(StopGradient(y), Sub(t, StopGradient(t)))
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
