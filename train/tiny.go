package train

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/model"
)

// TinyConfig is the embedded default model: Idefics2's architecture and real vocabulary (32,003
// tokens, so the real tokenizer drives it) at a size the pure Go backend trains in seconds.
func TinyConfig() model.Config {
	c := model.DefaultConfig()
	c.Vision = model.VisionConfig{HiddenSize: 32, IntermediateSize: 64, NumHiddenLayers: 2, NumAttentionHeads: 4,
		NumChannels: 3, ImageSize: 64, PatchSize: 8, HiddenAct: "gelu_pytorch_tanh", LayerNormEps: 1e-6}
	c.Perceiver = model.PerceiverConfig{HiddenAct: "silu", HiddenSize: 64, RMSNormEps: 1e-5, NLatents: 8, Depth: 1,
		NHeads: 4, HeadDim: 16, NumKeyValueHeads: 2}
	window := 4096
	pad := 0
	c.Text = model.TextConfig{VocabSize: 32003, HiddenSize: 64, IntermediateSize: 128, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, HiddenAct: "silu", MaxPositionEmbeddings: 4096,
		RMSNormEps: 1e-5, RopeTheta: 10000, SlidingWindow: &window, PadTokenID: &pad, BOSTokenID: 1, EOSTokenID: 2}
	c.PerceiverEpsForced = true
	return c
}

// EnsureTiny writes a randomly initialised tiny model to dir unless dir already holds one.
func EnsureTiny(dir string, seed uint64) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return false, nil
	}
	m := model.New(TinyConfig(), dtypes.Float32)
	m.RandomInit(seed)
	// A random head with rows of norm ≈ 1 caps the logit of any token at √hidden ≈ 8 above
	// noise of the same order over 32,003 tokens, so even a perfect adapter could not push an
	// answer token's probability near 1. A larger frozen head leaves the adapter room to learn.
	if err := scaleVariable(m, "lm_head.weight", 4); err != nil {
		return false, err
	}
	if err := m.SaveHF(dir, dtypes.Float32); err != nil {
		return false, fmt.Errorf("building the tiny model in %s: %w", dir, err)
	}
	return true, nil
}

func scaleVariable(m *model.Model, name string, f float32) error {
	v := m.Variable(name)
	val, err := v.Value()
	if err != nil {
		return err
	}
	t := tensors.FromShape(val.Shape())
	tensors.MustConstFlatData(val, func(src []float32) {
		tensors.MustMutableFlatData(t, func(dst []float32) {
			for i, x := range src {
				dst[i] = x * f
			}
		})
	})
	return v.SetValue(t)
}
