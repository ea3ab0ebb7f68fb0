package model

import "fmt"

// Param is one checkpoint tensor: its HF name and PyTorch shape.
type Param struct {
	Name  string
	Shape []int
}

// Size is the number of elements of p.
func (p Param) Size() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// Component names the part of the model a parameter belongs to, for per-component counts.
func (p Param) Component() string {
	switch {
	case hasPrefix(p.Name, "model.vision_model."):
		return "vision_model"
	case hasPrefix(p.Name, "model.connector.modality_projection."):
		return "modality_projection"
	case hasPrefix(p.Name, "model.connector.perceiver_resampler."):
		return "perceiver_resampler"
	case hasPrefix(p.Name, "model.text_model."):
		return "text_model"
	default:
		return "lm_head"
	}
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

// Params lists every tensor of Idefics2ForConditionalGeneration for c, in checkpoint naming.
// It is the single source of truth that loading checks a checkpoint against.
func (c Config) Params() []Param {
	var ps []Param
	add := func(name string, shape ...int) { ps = append(ps, Param{name, shape}) }
	linear := func(prefix string, out, in int, bias bool) {
		add(prefix+".weight", out, in)
		if bias {
			add(prefix+".bias", out)
		}
	}
	v := c.Vision
	add("model.vision_model.embeddings.patch_embedding.weight", v.HiddenSize, v.NumChannels, v.PatchSize, v.PatchSize)
	add("model.vision_model.embeddings.patch_embedding.bias", v.HiddenSize)
	add("model.vision_model.embeddings.position_embedding.weight", v.PatchesPerSide()*v.PatchesPerSide(), v.HiddenSize)
	for i := 0; i < v.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.vision_model.encoder.layers.%d.", i)
		for _, n := range []string{"k_proj", "v_proj", "q_proj", "out_proj"} {
			linear(p+"self_attn."+n, v.HiddenSize, v.HiddenSize, true)
		}
		add(p+"layer_norm1.weight", v.HiddenSize)
		add(p+"layer_norm1.bias", v.HiddenSize)
		linear(p+"mlp.fc1", v.IntermediateSize, v.HiddenSize, true)
		linear(p+"mlp.fc2", v.HiddenSize, v.IntermediateSize, true)
		add(p+"layer_norm2.weight", v.HiddenSize)
		add(p+"layer_norm2.bias", v.HiddenSize)
	}
	add("model.vision_model.post_layernorm.weight", v.HiddenSize)
	add("model.vision_model.post_layernorm.bias", v.HiddenSize)

	t, r := c.Text, c.Perceiver
	linear("model.connector.modality_projection.gate_proj", t.IntermediateSize, v.HiddenSize, false)
	linear("model.connector.modality_projection.up_proj", t.IntermediateSize, v.HiddenSize, false)
	linear("model.connector.modality_projection.down_proj", t.HiddenSize, t.IntermediateSize, false)
	add("model.connector.perceiver_resampler.latents", r.NLatents, r.HiddenSize)
	for i := 0; i < r.Depth; i++ {
		p := fmt.Sprintf("model.connector.perceiver_resampler.layers.%d.", i)
		add(p+"input_latents_norm.weight", r.HiddenSize)
		add(p+"input_context_norm.weight", r.HiddenSize)
		linear(p+"self_attn.q_proj", r.NHeads*r.HeadDim, r.HiddenSize, false)
		linear(p+"self_attn.k_proj", r.NumKeyValueHeads*r.HeadDim, r.HiddenSize, false)
		linear(p+"self_attn.v_proj", r.NumKeyValueHeads*r.HeadDim, r.HiddenSize, false)
		linear(p+"self_attn.o_proj", r.HiddenSize, r.NHeads*r.HeadDim, false)
		add(p+"post_attention_layernorm.weight", r.HiddenSize)
		linear(p+"mlp.gate_proj", 4*r.HiddenSize, r.HiddenSize, false)
		linear(p+"mlp.up_proj", 4*r.HiddenSize, r.HiddenSize, false)
		linear(p+"mlp.down_proj", r.HiddenSize, 4*r.HiddenSize, false)
	}
	add("model.connector.perceiver_resampler.norm.weight", r.HiddenSize)

	add("model.text_model.embed_tokens.weight", t.VocabSize, t.HiddenSize)
	for i := 0; i < t.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.text_model.layers.%d.", i)
		linear(p+"self_attn.q_proj", t.NumAttentionHeads*t.HeadDim, t.HiddenSize, false)
		linear(p+"self_attn.k_proj", t.NumKeyValueHeads*t.HeadDim, t.HiddenSize, false)
		linear(p+"self_attn.v_proj", t.NumKeyValueHeads*t.HeadDim, t.HiddenSize, false)
		linear(p+"self_attn.o_proj", t.HiddenSize, t.NumAttentionHeads*t.HeadDim, false)
		linear(p+"mlp.gate_proj", t.IntermediateSize, t.HiddenSize, false)
		linear(p+"mlp.up_proj", t.IntermediateSize, t.HiddenSize, false)
		linear(p+"mlp.down_proj", t.HiddenSize, t.IntermediateSize, false)
		add(p+"input_layernorm.weight", t.HiddenSize)
		add(p+"post_attention_layernorm.weight", t.HiddenSize)
	}
	add("model.text_model.norm.weight", t.HiddenSize)
	if !c.TieWordEmbeddings {
		add("lm_head.weight", t.VocabSize, t.HiddenSize)
	}
	return ps
}

// ParamCounts returns the number of parameters per component and in total.
func (c Config) ParamCounts() (perComponent map[string]int64, total int64) {
	perComponent = map[string]int64{}
	for _, p := range c.Params() {
		n := int64(p.Size())
		perComponent[p.Component()] += n
		total += n
	}
	return perComponent, total
}
