package model

import (
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// VisionTransformer is Idefics2VisionTransformer (SigLIP) over M real images.
// pixels is [M, C, Hp·p, Wp·p]; patchMask [M, P] int32 (1 = valid); positionIDs [M, P] int32.
// Returns the post-LayerNorm last hidden state [M, P, Dv].
func (b *builder) VisionTransformer(ctx *context.Context, c VisionConfig, pixels, patchMask, positionIDs *Node) *Node {
	h := b.visionEmbeddings(ctx.In("embeddings"), c, pixels, positionIDs)
	valid := NotEqual(patchMask, ZerosLike(patchMask))
	allowed := InsertAxes(valid, 1) // every query attends to the valid keys: [M, 1, P]
	for i := 0; i < c.NumHiddenLayers; i++ {
		layer := ctx.In("encoder").In("layers").Inf("%d", i)
		h = b.remat.layer(layer, h, func(x *Node) *Node { return b.visionLayer(layer, c, x, allowed) })
	}
	return b.LayerNorm(ctx, "post_layernorm", h, c.LayerNormEps)
}

// visionEmbeddings is the stride-p convolution written as patch extraction plus a matmul (the
// pure Go backend has no convolution gradient), plus the bucketed position embeddings.
func (b *builder) visionEmbeddings(ctx *context.Context, c VisionConfig, pixels, positionIDs *Node) *Node {
	g := pixels.Graph()
	dims := pixels.Shape().Dimensions
	m, ch, p := dims[0], dims[1], c.PatchSize
	hp, wp := dims[2]/p, dims[3]/p
	patches := Reshape(pixels, m, ch, hp, p, wp, p)
	patches = TransposeAllDims(patches, 0, 2, 4, 1, 3, 5) // [M, hp, wp, C, p, p]: PyTorch's kernel order
	patches = Reshape(patches, m, hp*wp, ch*p*p)
	conv := ctx.In("patch_embedding")
	w := b.weight(conv, g, "weight")
	w = Reshape(w, c.HiddenSize, ch*p*p)
	// Not routed through b.linear: a LoRA on a convolution has a different (conv) weight layout.
	emb := Add(LinearCore(ConvertDType(patches, b.dtype), w), leftPad(b.weight(conv, g, "bias"), 3))
	table := b.weight(ctx.In("position_embedding"), g, "weight")
	pos := Gather(table, InsertAxes(positionIDs, -1))
	return Add(emb, pos)
}

// visionLayer is a pre-LN encoder layer: x + attn(LN1(x)), then + fc2(gelu(fc1(LN2(·)))).
func (b *builder) visionLayer(ctx *context.Context, c VisionConfig, x, allowed *Node) *Node {
	h := b.LayerNorm(ctx, "layer_norm1", x, c.LayerNormEps)
	attn := ctx.In("self_attn")
	heads := c.NumAttentionHeads
	q := splitHeads(b.Linear(attn, "q_proj", h), heads)
	k := splitHeads(b.Linear(attn, "k_proj", h), heads)
	v := splitHeads(b.Linear(attn, "v_proj", h), heads)
	o := b.attention(q, k, v, allowed, 1/math.Sqrt(float64(c.HiddenSize/heads)), false)
	x = Add(x, b.Linear(attn, "out_proj", o))

	h = b.LayerNorm(ctx, "layer_norm2", x, c.LayerNormEps)
	mlp := ctx.In("mlp")
	h = b.Linear(mlp, "fc1", h)
	if c.HiddenAct == "gelu" {
		h = geluErf(h)
	} else {
		h = geluTanh(h)
	}
	return Add(x, b.Linear(mlp, "fc2", h))
}
