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
	// Remat holds what checkpointed layers contribute to the variables' gradients (nil when the
	// graph is not a checkpointed training graph): take gradients with Outputs.Gradient.
	Remat *Remat
}

// Gradient is the gradient of loss for each of vars, checkpointed layers included.
func (o Outputs) Gradient(loss *Node, vars []*context.Variable) []*Node {
	return o.Remat.Gradient(loss, vars)
}

// GraphInputs are a Batch's tensors as graph nodes, in the order Batch.Tensors returns them.
type GraphInputs struct {
	InputIDs, AttentionMask, PositionIDs, Targets  *Node
	Pixels, PatchMask, VisionPositionIDs, ImageRow *Node // nil for a text-only batch
}

// Forward builds Idefics2ForConditionalGeneration's forward pass in ctx's graph. In a training
// graph (ctx.IsTraining) with m.Checkpointing the decoder, vision and perceiver layers and the
// modality projection are recomputed in the backward pass.
func (m *Model) Forward(ctx *context.Context, in GraphInputs) Outputs {
	g := in.InputIDs.Graph()
	b := m.builder()
	if m.Checkpointing && ctx.IsTraining(g) {
		b.remat = NewRemat(m.DType)
	}
	var out Outputs
	out.Remat = b.remat
	var embeds *Node
	embeds, out.Vision, out.ImageHidden = m.inputEmbeds(ctx, b, in)
	text := ctx.In("model").In("text_model")
	h := b.TextModel(text, m.Config.Text, embeds, in.AttentionMask, in.PositionIDs)
	out.Logits = ConvertDType(b.LMHead(ctx, m.Config, h), dtypes.Float32)
	return out
}

// builder returns the layer builder of m's graphs.
func (m *Model) builder() *builder {
	return &builder{dtype: m.DType, linear: m.Linear, attentionKind: m.Attention}
}

// inputEmbeds is the front end shared by training and generation: the token embeddings with
// every <image> token replaced by its row of the connector's output (HF's inputs_merger). Without
// images, vision and imageHidden are nil.
func (m *Model) inputEmbeds(ctx *context.Context, b *builder, in GraphInputs) (embeds, vision, imageHidden *Node) {
	c := m.Config
	embeds = b.Embed(ctx.In("model").In("text_model"), in.InputIDs)
	if in.Pixels == nil {
		return embeds, nil, nil
	}
	vision = b.VisionTransformer(ctx.In("model").In("vision_model"), c.Vision, in.Pixels, in.PatchMask, in.VisionPositionIDs)
	imageHidden = b.Connector(ctx.In("model").In("connector"), c, vision, in.PatchMask)
	dims := imageHidden.Shape().Dimensions
	features := Reshape(imageHidden, dims[0]*dims[1], dims[2])
	return MergeImages(embeds, in.InputIDs, in.ImageRow, features, c.ImageTokenID), vision, imageHidden
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
