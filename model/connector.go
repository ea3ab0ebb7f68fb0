package model

import (
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Connector is Idefics2Connector: the SwiGLU modality projection of every vision position
// (padding ones too, as HF), then the perceiver resampler. vision is [M, P, Dv], patchMask
// [M, P] int32. Returns [M, latents, D].
func (b *builder) Connector(ctx *context.Context, c Config, vision, patchMask *Node) *Node {
	mp := ctx.In("modality_projection")
	projected := b.remat.layer(mp, vision, func(v *Node) *Node { return b.SwiGLU(mp, v) })
	return b.perceiver(ctx.In("perceiver_resampler"), c.Perceiver, projected, patchMask)
}

// perceiver resamples the context into a fixed number of latents. Keys and values run over
// context ‖ latents (context first), with the latents always attendable; only the latents are
// updated across layers, the context is re-normalised from the same projection in each layer.
func (b *builder) perceiver(ctx *context.Context, c PerceiverConfig, context_, patchMask *Node) *Node {
	g := context_.Graph()
	m := context_.Shape().Dim(0)
	latents := b.weight(ctx, g, "latents") // [n, D]
	n, d := latents.Shape().Dim(0), latents.Shape().Dim(1)
	lat := BroadcastToDims(InsertAxes(latents, 0), m, n, d)

	valid := NotEqual(patchMask, ZerosLike(patchMask))
	keyValid := Concatenate([]*Node{valid, BroadcastToDims(Const(g, true), m, n)}, 1)
	allowed := InsertAxes(keyValid, 1) // [M, 1, P+n]

	// Each layer reads the context and updates the latents; checkpointed, it takes and returns
	// both as one tensor [M, P+n, D], so that the context's gradient flows through the
	// recomputation too.
	p := context_.Shape().Dim(1)
	both := Concatenate([]*Node{context_, lat}, 1)
	for i := 0; i < c.Depth; i++ {
		layer := ctx.In("layers").Inf("%d", i)
		both = b.remat.layer(layer, both, func(both *Node) *Node {
			context_, lat := SliceAxis(both, 1, AxisRange(0, p)), SliceAxis(both, 1, AxisRange(p))
			latN := b.RMSNorm(layer, "input_latents_norm", lat, c.RMSNormEps)
			ctxN := b.RMSNorm(layer, "input_context_norm", context_, c.RMSNormEps)
			attn := layer.In("self_attn")
			q := splitHeads(b.Linear(attn, "q_proj", latN), c.NHeads)
			kvIn := Concatenate([]*Node{ctxN, latN}, 1)
			k := splitHeads(b.Linear(attn, "k_proj", kvIn), c.NumKeyValueHeads)
			v := splitHeads(b.Linear(attn, "v_proj", kvIn), c.NumKeyValueHeads)
			o := b.attention(q, k, v, allowed, 1/math.Sqrt(float64(c.HeadDim)), false)
			lat = Add(lat, b.Linear(attn, "o_proj", o))
			lat = Add(lat, b.SwiGLU(layer.In("mlp"), b.RMSNorm(layer, "post_attention_layernorm", lat, c.RMSNormEps)))
			return Concatenate([]*Node{context_, lat}, 1)
		})
	}
	return b.RMSNorm(ctx, "norm", SliceAxis(both, 1, AxisRange(p)), c.RMSNormEps)
}
