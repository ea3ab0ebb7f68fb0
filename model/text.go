package model

import (
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Embed looks up the token embeddings [B, T, D] of ids [B, T].
func (b *builder) Embed(ctx *context.Context, ids *Node) *Node {
	table := b.weight(ctx.In("embed_tokens"), ids.Graph(), "weight")
	return Gather(table, InsertAxes(ids, -1))
}

// MergeImages overwrites the embedding of every <image> token with its row of the image
// features (HF's inputs_merger). features is [M·latents, D]; imageRow [B, T] int32.
func MergeImages(embeds, ids, imageRow, features *Node, imageTokenID int) *Node {
	isImage := Equal(ids, Scalar(ids.Graph(), ids.DType(), imageTokenID))
	isImage = BroadcastToDims(InsertAxes(isImage, -1), embeds.Shape().Dimensions...)
	picked := Gather(features, InsertAxes(imageRow, -1))
	return Where(isImage, ConvertDType(picked, embeds.DType()), embeds)
}

// TextModel is the Mistral decoder over input embeddings [B, T, D]. attentionMask [B, T] int32
// (1 = real token) and positionIDs [B, T] int32. Returns the final-norm hidden states.
func (b *builder) TextModel(ctx *context.Context, c TextConfig, embeds, attentionMask, positionIDs *Node) *Node {
	allowed := decoderMask(attentionMask, c.Window())
	cos, sin := rope(positionIDs, c.HeadDim, c.RopeTheta, b.dtype)
	h := embeds
	for i := 0; i < c.NumHiddenLayers; i++ {
		layer := ctx.In("layers").Inf("%d", i)
		h = b.remat.layer(layer, h, func(x *Node) *Node {
			out, _, _ := b.decoderLayer(layer, c, x, allowed, cos, sin, nil)
			return out
		})
	}
	return b.RMSNorm(ctx, "norm", h, c.RMSNormEps)
}

// decoderLayer is one Mistral decoder layer over x [B, T, D]; it also returns its keys (after
// RoPE) and values [B, T, Hkv, d]. With cache != nil the new keys and values go through cache,
// which returns the full key and value tensors to attend to (the KV cache of a decode step);
// without, the layer attends to its own keys and values (training, prefill).
func (b *builder) decoderLayer(ctx *context.Context, c TextConfig, x, allowed, cos, sin *Node, cache func(k, v *Node) (*Node, *Node)) (out, k, v *Node) {
	batch, t := x.Shape().Dim(0), x.Shape().Dim(1)
	assertDims("decoder layer input", x, batch, t, c.HiddenSize)
	h := b.RMSNorm(ctx, "input_layernorm", x, c.RMSNormEps)
	attn := ctx.In("self_attn")
	q := applyRope(splitHeads(b.Linear(attn, "q_proj", h), c.NumAttentionHeads), cos, sin)
	k = applyRope(splitHeads(b.Linear(attn, "k_proj", h), c.NumKeyValueHeads), cos, sin)
	v = splitHeads(b.Linear(attn, "v_proj", h), c.NumKeyValueHeads)
	kAll, vAll := k, v
	if cache != nil {
		kAll, vAll = cache(k, v)
		assertDims("decoder layer cached keys", kAll, batch, -1, c.NumKeyValueHeads, c.HeadDim)
	}
	// Without a cache, keys are the layer's own tokens: causal, so the blocked attention can skip.
	o := b.attention(q, kAll, vAll, allowed, 1/math.Sqrt(float64(c.HeadDim)), cache == nil)
	x = Add(x, b.Linear(attn, "o_proj", o))
	h = b.RMSNorm(ctx, "post_attention_layernorm", x, c.RMSNormEps)
	out = Add(x, b.SwiGLU(ctx.In("mlp"), h))
	assertDims("decoder layer output", out, batch, t, c.HiddenSize)
	return out, k, v
}

// decoderMask allows key j for query i iff j ≤ i, i − j < window (when there is a window) and
// key j is a real token. Indices, not position ids, define causality, as in HF.
func decoderMask(attentionMask *Node, window int) *Node {
	g := attentionMask.Graph()
	batch, t := attentionMask.Shape().Dim(0), attentionMask.Shape().Dim(1)
	qi := Iota(g, shapes.Make(dtypes.Int32, t, t), 0)
	kj := Iota(g, shapes.Make(dtypes.Int32, t, t), 1)
	allowed := GreaterOrEqual(qi, kj)
	if window > 0 {
		allowed = LogicalAnd(allowed, LessThan(Sub(qi, kj), Scalar(g, dtypes.Int32, window)))
	}
	keyValid := NotEqual(attentionMask, ZerosLike(attentionMask)) // [B, T]
	return LogicalAnd(
		BroadcastToDims(InsertAxes(allowed, 0), batch, t, t),
		BroadcastToDims(InsertAxes(keyValid, 1), batch, t, t))
}

// rope returns the cos and sin tables [B, T, 1, headDim] for positionIDs [B, T]: inverse
// frequencies θ^(−2j/d) and angles in float32, as HF computes them, then cast to dtype.
func rope(positionIDs *Node, headDim int, theta float64, dtype dtypes.DType) (cos, sin *Node) {
	g := positionIDs.Graph()
	half := headDim / 2
	inv := make([]float32, headDim)
	for j := 0; j < half; j++ {
		exponent := float32(2*j) / float32(headDim)
		inv[j] = float32(1 / float64(float32(math.Pow(theta, float64(exponent)))))
		inv[j+half] = inv[j]
	}
	angles := Mul(InsertAxes(ConvertDType(positionIDs, dtypes.Float32), -1), leftPad(Const(g, inv), 3)) // [B, T, d]
	angles = InsertAxes(angles, 2)
	return ConvertDType(Cos(angles), dtype), ConvertDType(Sin(angles), dtype)
}

// applyRope rotates x [B, T, H, d] by the "rotate half" convention of HF Llama/Mistral:
// x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁].
func applyRope(x, cos, sin *Node) *Node {
	half := x.Shape().Dim(-1) / 2
	x1 := SliceAxis(x, -1, AxisRange(0, half))
	x2 := SliceAxis(x, -1, AxisRange(half))
	rotated := Concatenate([]*Node{Neg(x2), x1}, -1)
	return Add(Mul(x, cos), Mul(rotated, sin))
}

// LMHead projects hidden states [B, T, D] to logits [B, T, V] (tied to embed_tokens if the
// config says so).
func (b *builder) LMHead(ctx *context.Context, c Config, h *Node) *Node {
	if c.TieWordEmbeddings {
		w := b.weight(ctx.In("model").In("text_model").In("embed_tokens"), h.Graph(), "weight")
		return LinearCore(h, w)
	}
	return b.Linear(ctx, "lm_head", h)
}
