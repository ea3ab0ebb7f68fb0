package bench

import "github.com/idefics2/idefics2/model"

// FLOPs are the model FLOPs of one forward pass over a batch, per component, by the convention
// of peers.md §3.3: 2 FLOPs per weight per token for every matmul weight (embedding lookups and
// the position table are not matmuls and count 0), plus attention 2·2·Tq·Tk·d per layer (QKᵀ and
// PV, full square, not halved for causal masking, as nanoGPT and llm.c count it).
type FLOPs struct {
	Vision     float64 `json:"vision"`
	Projection float64 `json:"modality_projection"`
	Perceiver  float64 `json:"perceiver"`
	Text       float64 `json:"text"`      // decoder layers, matmuls
	TextAttn   float64 `json:"text_attn"` // decoder attention (QKᵀ, PV)
	LMHead     float64 `json:"lm_head"`
	ConnAttn   float64 `json:"perceiver_attn"`
	VisionAttn float64 `json:"vision_attn"`
}

// Total is the forward total.
func (f FLOPs) Total() float64 {
	return f.Vision + f.VisionAttn + f.Projection + f.Perceiver + f.ConnAttn + f.Text + f.TextAttn + f.LMHead
}

// ForwardFLOPs counts one forward pass over B rows of T tokens with M images of P patches each.
func ForwardFLOPs(c model.Config, B, T, M, P int) FLOPs {
	var f FLOPs
	v, r, t := c.Vision, c.Perceiver, c.Text
	fm, fp := float64(M), float64(P)
	dv, fv := float64(v.HiddenSize), float64(v.IntermediateSize)
	patchW := float64(v.NumChannels * v.PatchSize * v.PatchSize * v.HiddenSize)
	f.Vision = fm * 2 * fp * (patchW + float64(v.NumHiddenLayers)*(4*dv*dv+2*dv*fv))
	f.VisionAttn = fm * float64(v.NumHiddenLayers) * 4 * fp * fp * dv

	D, Ft := float64(t.HiddenSize), float64(t.IntermediateSize)
	f.Projection = fm * 2 * fp * (2*Ft*dv + D*Ft)
	n := float64(r.NLatents)
	qd, kvd := float64(r.NHeads*r.HeadDim), float64(r.NumKeyValueHeads*r.HeadDim)
	rd := float64(r.HiddenSize)
	perLayer := 2*n*rd*qd + 2*(fp+n)*2*rd*kvd + 2*n*qd*rd + 2*n*3*rd*4*rd
	f.Perceiver = fm * float64(r.Depth) * perLayer
	f.ConnAttn = fm * float64(r.Depth) * 4 * n * (fp + n) * qd

	fb, ft := float64(B), float64(T)
	hq, hkv := float64(t.NumAttentionHeads*t.HeadDim), float64(t.NumKeyValueHeads*t.HeadDim)
	f.Text = fb * ft * float64(t.NumHiddenLayers) * 2 * (2*D*hq + 2*D*hkv + 3*D*Ft)
	f.TextAttn = fb * float64(t.NumHiddenLayers) * 4 * ft * ft * hq
	f.LMHead = fb * ft * 2 * D * float64(t.VocabSize)
	return f
}

// TrainFLOPs are the model FLOPs of one LoRA + connector train step (peers.md §3.3): the frozen
// vision tower runs forward only (×1), the fully trained connector costs ×3, the frozen decoder
// and LM head carry gradients to the connector (×2 for their matmuls, ×3 for attention, whose
// two operands both need gradients), and each LoRA pair of rank r on a d_in→d_out projection
// adds 6·r·(d_in+d_out) per token.
func TrainFLOPs(f FLOPs, loraParamsPerToken float64, tokens int) float64 {
	return f.Vision + f.VisionAttn +
		3*(f.Projection+f.Perceiver+f.ConnAttn) +
		2*(f.Text+f.LMHead) + 3*f.TextAttn +
		6*loraParamsPerToken*float64(tokens)
}

// LoRAParams is the number of LoRA weights of rank r on the decoder's seven projections
// (q, k, v, o, gate, up, down in every layer), the tutorial's target set.
func LoRAParams(c model.Config, r int) float64 {
	t := c.Text
	D, F := t.HiddenSize, t.IntermediateSize
	hq, hkv := t.NumAttentionHeads*t.HeadDim, t.NumKeyValueHeads*t.HeadDim
	per := (D + hq) + 2*(D+hkv) + (hq + D) + 2*(D+F) + (F + D)
	return float64(r * per * t.NumHiddenLayers)
}
