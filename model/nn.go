package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// LinearFunc computes a Linear layer y = x·Wᵀ (+ b) for the module at ctx's scope. Every
// projection of the model calls it, so that an adapter (LoRA, DoRA) can wrap exactly the modules
// its target regex selects. module is the HF module name, e.g. "model.text_model.layers.0.mlp.up_proj".
type LinearFunc func(ctx *context.Context, module string, x, weight, bias *Node) *Node

// PlainLinear is the Linear of the frozen base model.
func PlainLinear(_ *context.Context, _ string, x, weight, bias *Node) *Node {
	y := LinearCore(x, weight)
	if bias != nil {
		y = Add(y, leftPad(bias, y.Rank()))
	}
	return y
}

// leftPad reshapes v to rank by prepending axes of size 1, so that it broadcasts against the
// trailing axes of a tensor of that rank (GoMLX broadcasts only between equal ranks).
func leftPad(v *Node, rank int) *Node {
	if v.Rank() == rank {
		return v
	}
	dims := make([]int, rank)
	for i := range dims {
		dims[i] = 1
	}
	copy(dims[rank-v.Rank():], v.Shape().Dimensions)
	return Reshape(v, dims...)
}

// LinearCore (x·Wᵀ, no bias) contracts the last axis of x with the "in" axis of a PyTorch [out, in] weight.
func LinearCore(x, weight *Node) *Node {
	return DotGeneral(x, []int{x.Rank() - 1}, nil, weight, []int{1}, nil)
}

// ModuleName turns a context scope ("/model/text_model/layers/0/mlp/up_proj") into the HF module
// name ("model.text_model.layers.0.mlp.up_proj").
func ModuleName(ctx *context.Context) string {
	return strings.ReplaceAll(strings.TrimPrefix(ctx.Scope(), "/"), "/", ".")
}

// builder carries what every layer needs: the compute dtype, the Linear to call, the attention
// kind and, in a training graph with checkpointing, the recomputation state.
type builder struct {
	dtype         dtypes.DType
	linear        LinearFunc
	attentionKind string
	remat         *Remat
}

// assertDims panics, naming what, unless x has the given dimensions (−1 matches any size): the
// layer boundaries state their shapes, so a wrong wiring fails where it happens.
func assertDims(what string, x *Node, dims ...int) {
	got := x.Shape().Dimensions
	ok := len(got) == len(dims)
	for i := 0; ok && i < len(dims); i++ {
		ok = dims[i] < 0 || dims[i] == got[i]
	}
	if !ok {
		panic(fmt.Sprintf("model: %s has shape %v, want %v", what, got, dims))
	}
}

// weight returns the variable `name` at ctx's scope as a graph node. The variables must have
// been loaded (or created shape-only): a missing one is a programming error that names the tensor.
func (b *builder) weight(ctx *context.Context, g *Graph, name string) *Node {
	v := ctx.GetVariableByScopeAndName(ctx.Scope(), name)
	if v == nil {
		panic(missingWeight(ctx, name))
	}
	return b.cast(v.ValueGraph(g))
}

// cast brings a weight to the compute dtype: trained weights keep float32 master copies while the
// frozen ones are stored in the compute dtype.
func (b *builder) cast(w *Node) *Node {
	if w.DType() != b.dtype {
		return ConvertDType(w, b.dtype)
	}
	return w
}

// optionalWeight is weight for tensors a config may omit (biases).
func (b *builder) optionalWeight(ctx *context.Context, g *Graph, name string) *Node {
	v := ctx.GetVariableByScopeAndName(ctx.Scope(), name)
	if v == nil {
		return nil
	}
	return b.cast(v.ValueGraph(g))
}

// Linear applies the module at scope `name` under ctx (weight and optional bias).
func (b *builder) Linear(ctx *context.Context, name string, x *Node) *Node {
	mctx := ctx.In(name)
	w := b.linearWeight(mctx, x.Graph())
	bias := b.optionalWeight(mctx, x.Graph(), "bias")
	return b.linear(mctx, ModuleName(mctx), x, w, bias)
}

// RMSNorm is Mistral's: statistics in float32, the result cast back to the input dtype before the
// weight multiply. It uses 1/Sqrt rather than Rsqrt, which has no gradient in GoMLX v0.26.
func (b *builder) RMSNorm(ctx *context.Context, name string, x *Node, eps float64) *Node {
	w := b.weight(ctx.In(name), x.Graph(), "weight")
	dt := x.DType()
	xf := ConvertDType(x, dtypes.Float32)
	variance := ReduceAndKeep(Square(xf), ReduceMean, -1)
	y := Div(xf, Sqrt(AddScalar(variance, eps)))
	return Mul(ConvertDType(y, dt), leftPad(w, x.Rank()))
}

// LayerNorm is PyTorch's (biased variance), computed in float32 as PyTorch does for half types.
func (b *builder) LayerNorm(ctx *context.Context, name string, x *Node, eps float64) *Node {
	mctx := ctx.In(name)
	w := b.weight(mctx, x.Graph(), "weight")
	bias := b.weight(mctx, x.Graph(), "bias")
	dt := x.DType()
	xf := ConvertDType(x, dtypes.Float32)
	mean := ReduceAndKeep(xf, ReduceMean, -1)
	centered := Sub(xf, mean)
	variance := ReduceAndKeep(Square(centered), ReduceMean, -1)
	y := Div(centered, Sqrt(AddScalar(variance, eps)))
	y = Add(Mul(y, leftPad(ConvertDType(w, dtypes.Float32), y.Rank())), leftPad(ConvertDType(bias, dtypes.Float32), y.Rank()))
	return ConvertDType(y, dt)
}

// geluTanh is gelu_pytorch_tanh: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
func geluTanh(x *Node) *Node {
	inner := MulScalar(Add(x, MulScalar(Mul(x, Square(x)), 0.044715)), math.Sqrt(2/math.Pi))
	return Mul(MulScalar(x, 0.5), AddScalar(Tanh(inner), 1))
}

// geluErf is the exact gelu: 0.5·x·(1 + erf(x/√2)).
func geluErf(x *Node) *Node {
	return Mul(MulScalar(x, 0.5), AddScalar(Erf(MulScalar(x, 1/math.Sqrt2)), 1))
}

func silu(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// SwiGLU is the gated MLP of Mistral, the modality projection and the perceiver:
// down(silu(gate(x)) ⊙ up(x)).
func (b *builder) SwiGLU(ctx *context.Context, x *Node) *Node {
	gate := b.Linear(ctx, "gate_proj", x)
	up := b.Linear(ctx, "up_proj", x)
	return b.Linear(ctx, "down_proj", Mul(silu(gate), up))
}

// splitHeads reshapes [B, T, H·d] into [B, T, H, d].
func splitHeads(x *Node, heads int) *Node {
	dims := x.Shape().Dimensions
	return Reshape(x, dims[0], dims[1], heads, dims[2]/heads)
}
