package model

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// The graphs of generation. All have static shapes: the prompt is left padded to a bucketed
// length T and the KV cache has a bucketed length L ≥ T + new tokens, so a whole generation
// compiles one prefill graph per (B, T, image shapes) and one decode-step graph per (B, L).
//
// The cache of layer i is a pair of tensors [B, L, Hkv, d] in the compute dtype, keys after
// RoPE, as HF's DynamicCache stores them. Slot j of row b holds column j of that row's own
// (left padded) sequence; a row's position ids (cumsum of its attention mask − 1) only enter
// RoPE. The decode step writes slot cur[b] of each row with Where(Iota == cur, new, cache): the
// pure Go backend has no DynamicUpdateSlice.

// Prefill is the generation prefill over a left-padded prompt: the vision tower and connector
// (when in has images), the image merge, the decoder, and the logits of the last column only
// (every row's last real token, because of the left padding). slots is any [L] tensor: only its
// length matters, it fixes the cache length. Returns logits [B, V] float32 and the per-layer
// keys and values [B, L, Hkv, d], zero beyond the prompt.
func (m *Model) Prefill(ctx *context.Context, in GraphInputs, slots *Node) (logits *Node, keys, values []*Node) {
	b := m.builder()
	c := m.Config
	text := ctx.In("model").In("text_model")
	embeds, _, _ := m.inputEmbeds(ctx, b, in)
	tc := c.Text
	allowed := decoderMask(in.AttentionMask, tc.Window())
	cos, sin := rope(in.PositionIDs, tc.HeadDim, tc.RopeTheta, b.dtype)
	h := embeds
	batch, t := in.InputIDs.Shape().Dim(0), in.InputIDs.Shape().Dim(1)
	cacheLen := slots.Shape().Dim(0)
	for i := 0; i < tc.NumHiddenLayers; i++ {
		var k, v *Node
		h, k, v = b.decoderLayer(text.In("layers").Inf("%d", i), tc, h, allowed, cos, sin, nil)
		if cacheLen > t {
			zeros := Zeros(h.Graph(), shapes.Make(k.DType(), batch, cacheLen-t, tc.NumKeyValueHeads, tc.HeadDim))
			k = Concatenate([]*Node{k, zeros}, 1)
			v = Concatenate([]*Node{v, zeros}, 1)
		}
		keys, values = append(keys, k), append(values, v)
	}
	h = b.RMSNorm(text, "norm", h, tc.RMSNormEps)
	last := SliceAxis(h, 1, AxisElem(t-1)) // [B, 1, D]
	logits = ConvertDType(b.LMHead(ctx, c, last), dtypes.Float32)
	return Reshape(logits, batch, logits.Shape().Dim(-1)), keys, values
}

// DecodeStep runs one new token per row through the decoder with the KV cache. ids and
// positionIDs are [B, 1] int32; allowed is [B, L] int32 (1 = the query may attend to that cache
// slot: the row's real tokens so far, within the sliding window, including slot cur); cur is
// [B] int32, the slot each row's new keys and values are written to (rows of a running batch
// are at different points of their own sequences). Returns logits [B, V] float32 and the
// updated caches.
func (m *Model) DecodeStep(ctx *context.Context, ids, positionIDs, allowed, cur *Node, keys, values []*Node) (logits *Node, newKeys, newValues []*Node) {
	b := m.builder()
	c := m.Config
	tc := c.Text
	text := ctx.In("model").In("text_model")
	g := ids.Graph()
	batch := ids.Shape().Dim(0)
	cacheLen := allowed.Shape().Dim(1)
	h := b.Embed(text, ids)
	cos, sin := rope(positionIDs, tc.HeadDim, tc.RopeTheta, b.dtype)
	mask := InsertAxes(NotEqual(allowed, ZerosLike(allowed)), 1) // [B, 1, L]

	// slot[b, j, h, d] = (j == cur[b]), shared by all layers.
	assertDims("decode step cur", cur, batch)
	cacheShape := []int{batch, cacheLen, tc.NumKeyValueHeads, tc.HeadDim}
	isCur := Equal(Iota(g, shapes.Make(dtypes.Int32, batch, cacheLen), 1), BroadcastToDims(Reshape(ConvertDType(cur, dtypes.Int32), batch, 1), batch, cacheLen))
	slot := BroadcastToDims(Reshape(isCur, batch, cacheLen, 1, 1), cacheShape...)
	for i := 0; i < tc.NumHiddenLayers; i++ {
		kc, vc := keys[i], values[i]
		write := func(k, v *Node) (*Node, *Node) {
			kc = Where(slot, BroadcastToDims(k, cacheShape...), kc)
			vc = Where(slot, BroadcastToDims(v, cacheShape...), vc)
			return kc, vc
		}
		h, _, _ = b.decoderLayer(text.In("layers").Inf("%d", i), tc, h, mask, cos, sin, write)
		newKeys, newValues = append(newKeys, kc), append(newValues, vc)
	}
	h = b.RMSNorm(text, "norm", h, tc.RMSNormEps)
	logits = ConvertDType(b.LMHead(ctx, c, h), dtypes.Float32)
	return Reshape(logits, batch, logits.Shape().Dim(-1)), newKeys, newValues
}
