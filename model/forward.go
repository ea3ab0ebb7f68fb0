package model

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Outputs are the stages of one forward pass that callers and parity tests read.
type Outputs struct {
	Vision      *Node // [M, P, Dv] after post_layernorm; nil without images
	ImageHidden *Node // [M, latents, D] connector output; nil without images
	Logits      *Node // [B, T, V] in float32
}

// GraphInputs are a Batch's tensors as graph nodes, in the order Batch.Tensors returns them.
type GraphInputs struct {
	InputIDs, AttentionMask, PositionIDs, Targets  *Node
	Pixels, PatchMask, VisionPositionIDs, ImageRow *Node // nil for a text-only batch
}

// Forward builds Idefics2ForConditionalGeneration's forward pass in ctx's graph.
func (m *Model) Forward(ctx *context.Context, in GraphInputs) Outputs {
	b := &builder{dtype: m.DType, linear: m.Linear}
	c := m.Config
	var out Outputs
	text := ctx.In("model").In("text_model")
	embeds := b.Embed(text, in.InputIDs)
	if in.Pixels != nil {
		out.Vision = b.VisionTransformer(ctx.In("model").In("vision_model"), c.Vision, in.Pixels, in.PatchMask, in.VisionPositionIDs)
		out.ImageHidden = b.Connector(ctx.In("model").In("connector"), c, out.Vision, in.PatchMask)
		dims := out.ImageHidden.Shape().Dimensions
		features := Reshape(out.ImageHidden, dims[0]*dims[1], dims[2])
		embeds = MergeImages(embeds, in.InputIDs, in.ImageRow, features, c.ImageTokenID)
	}
	h := b.TextModel(text, c.Text, embeds, in.AttentionMask, in.PositionIDs)
	out.Logits = ConvertDType(b.LMHead(ctx, c, h), dtypes.Float32)
	return out
}

// CrossEntropy is HF's causal-LM loss on already shifted targets [B, T] (−100 ignored):
// logits in float32, the summed negative log-likelihood over target tokens and their count.
// The mean is sum/count; under gradient accumulation HF divides the sum by the target count of
// all micro-batches instead (num_items_in_batch).
func CrossEntropy(logits, targets *Node) (sum, count *Node) {
	g := logits.Graph()
	dims := logits.Shape().Dimensions
	n, vocab := dims[0]*dims[1], dims[2]
	flat := Reshape(logits, n, vocab)
	tgt := Reshape(targets, n)
	valid := NotEqual(tgt, Scalar(g, tgt.DType(), IgnoreIndex))
	safe := Where(valid, tgt, ZerosLike(tgt))
	mx := StopGradient(ReduceAndKeep(flat, ReduceMax, -1))
	lse := Add(Log(ReduceSum(Exp(Sub(flat, mx)), -1)), Reshape(mx, n))
	rows := Iota(g, safe.Shape(), 0)
	picked := Gather(flat, Stack([]*Node{rows, safe}, -1))
	vf := ConvertDType(valid, dtypes.Float32)
	return ReduceAllSum(Mul(Sub(lse, picked), vf)), ReduceAllSum(vf)
}

// MeanLoss is sum/count, 0 when nothing is a target (as HF returns for an all-ignored batch it
// would be NaN; 0 keeps a training step finite).
func MeanLoss(sum, count *Node) *Node {
	return Div(sum, Max(count, OnesLike(count)))
}
