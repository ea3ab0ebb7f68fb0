package bench

import (
	"fmt"
	"math/rand/v2"

	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/quant"
)

// QLoRATargets is the Idefics2 tutorial's LoRA regex: the text model and the connector (modality
// projection and perceiver resampler), which --connector lora trains instead of the whole
// connector.
const QLoRATargets = `.*(text_model|modality_projection|perceiver_resampler).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$`

// quantization is the model's 4-bit storage for o: with the connector fully trained, its Linears
// stay in the compute dtype (they train).
func quantization(o Options, cfg model.Config) (model.Quantization, error) {
	switch o.Connector {
	case "", "full", "lora":
	default:
		return model.Quantization{}, fmt.Errorf("connector %q: use lora or full", o.Connector)
	}
	q, err := model.ParseQuantization(o.Quantization, true)
	if err != nil || !q.Enabled() {
		return q, err
	}
	if o.Connector != "lora" {
		q.Skip = []string{"model.connector"}
	}
	return q, nil
}

// packedSet names the weights m keeps in 4 bits.
func packedSet(m *model.Model) map[string]bool {
	out := map[string]bool{}
	if !m.Quant.Enabled() {
		return out
	}
	skip := func(name string) bool {
		for _, s := range m.Quant.Skip {
			if len(name) > len(s) && name[:len(s)+1] == s+"." {
				return true
			}
		}
		return false
	}
	for _, p := range m.Config.QuantizedLinears() {
		if !skip(p.Name) {
			out[p.Name] = true
		}
	}
	return out
}

// randomPacked gives a 4-bit weight random codes and one scale per block, so that the
// dequantized weight has standard deviation ≈ std (speed does not depend on the values; drawing
// and quantizing 7 billion floats would take minutes).
func randomPacked(m *model.Model, p model.Param, std float64, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x4b17))
	n := p.Size()
	codes := make([]uint8, (n+1)/2)
	for i := range codes {
		codes[i] = uint8(rng.Uint32())
	}
	blocks := (n + quant.Blocksize - 1) / quant.Blocksize
	absmax := make([]float32, blocks)
	for i := range absmax {
		absmax[i] = float32(std * 2 * (0.75 + 0.5*rng.Float64()))
	}
	pk := &quant.Packed{Type: m.Quant.Type, Blocksize: quant.Blocksize, Shape: p.Shape, Codes: codes, Absmax: absmax}
	if m.Quant.DoubleQuant {
		pk.Nested, pk.Absmax = quant.QuantizeAbsmax(absmax), nil
	}
	m.SetPacked(p.Name, pk, m.DType)
}
