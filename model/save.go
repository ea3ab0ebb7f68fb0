package model

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/nlpodyssey/safetensors"
)

// HFJSON renders c as an HF config.json that Idefics2Config.from_pretrained reads back to the
// same model (every field explicit, so no default of any transformers version applies).
func (c Config) HFJSON() ([]byte, error) {
	text := map[string]any{
		"model_type": "mistral", "vocab_size": c.Text.VocabSize, "hidden_size": c.Text.HiddenSize,
		"intermediate_size": c.Text.IntermediateSize, "num_hidden_layers": c.Text.NumHiddenLayers,
		"num_attention_heads": c.Text.NumAttentionHeads, "num_key_value_heads": c.Text.NumKeyValueHeads,
		"head_dim": c.Text.HeadDim, "hidden_act": c.Text.HiddenAct, "max_position_embeddings": c.Text.MaxPositionEmbeddings,
		"rms_norm_eps": c.Text.RMSNormEps, "rope_theta": c.Text.RopeTheta, "sliding_window": c.Text.SlidingWindow,
		"pad_token_id": c.Text.PadTokenID, "bos_token_id": c.Text.BOSTokenID, "eos_token_id": c.Text.EOSTokenID,
		"tie_word_embeddings": c.TieWordEmbeddings, "attention_dropout": 0.0,
	}
	v := c.Vision
	vision := map[string]any{
		"model_type": "idefics2_vision", "hidden_size": v.HiddenSize, "intermediate_size": v.IntermediateSize,
		"num_hidden_layers": v.NumHiddenLayers, "num_attention_heads": v.NumAttentionHeads, "num_channels": v.NumChannels,
		"image_size": v.ImageSize, "patch_size": v.PatchSize, "hidden_act": v.HiddenAct, "layer_norm_eps": v.LayerNormEps,
		"attention_dropout": v.AttentionDropout,
	}
	p := c.Perceiver
	perceiver := map[string]any{
		"model_type": "idefics2_perceiver", "hidden_act": p.HiddenAct, "hidden_size": p.HiddenSize, "rms_norm_eps": p.RMSNormEps,
		"resampler_n_latents": p.NLatents, "resampler_depth": p.Depth, "resampler_n_heads": p.NHeads,
		"resampler_head_dim": p.HeadDim, "num_key_value_heads": p.NumKeyValueHeads, "attention_dropout": p.AttentionDropout,
	}
	top := map[string]any{
		"architectures": []string{"Idefics2ForConditionalGeneration"}, "model_type": "idefics2",
		"image_token_id": c.ImageTokenID, "tie_word_embeddings": c.TieWordEmbeddings, "use_cache": true,
		"text_config": text, "vision_config": vision, "perceiver_config": perceiver,
	}
	return json.MarshalIndent(top, "", "  ")
}

// RandomInit gives every parameter a random value (linear weights N(0, 1/fan_in), norms 1,
// biases 0, embeddings N(0, 0.02²)), for tiny models built from scratch and benchmarks.
func (m *Model) RandomInit(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for _, p := range m.Config.Params() {
		t := tensors.FromShape(shapes.Make(dtypes.Float32, p.Shape...))
		tensors.MustMutableFlatData(t, func(f []float32) {
			switch {
			case len(p.Shape) == 1 && strings.HasSuffix(p.Name, "bias"):
			case len(p.Shape) == 1:
				for i := range f {
					f[i] = 1
				}
			case strings.Contains(p.Name, "embed_tokens") || strings.Contains(p.Name, "position_embedding") || strings.HasSuffix(p.Name, "latents"):
				for i := range f {
					f[i] = float32(0.02 * rng.NormFloat64())
				}
			default:
				std := 1 / math.Sqrt(float64(p.Size()/p.Shape[0]))
				for i := range f {
					f[i] = float32(std * rng.NormFloat64())
				}
			}
		})
		if m.DType == dtypes.BFloat16 {
			t = toBF16(t)
		}
		scope, name := VariableScope(p.Name)
		if v := m.Ctx.GetVariableByScopeAndName(scope, name); v != nil {
			_ = v.SetValue(t)
			continue
		}
		m.Ctx.InAbsPath(scope).VariableWithValue(name, t).SetTrainable(false)
	}
}

func toBF16(t *tensors.Tensor) *tensors.Tensor {
	out := tensors.FromShape(shapes.Make(dtypes.BFloat16, t.Shape().Dimensions...))
	tensors.MustConstFlatData(t, func(src []float32) {
		tensors.MustMutableFlatData(out, func(dst []bfloat16.BFloat16) {
			for i, x := range src {
				dst[i] = BF16RoundNearestEven(x)
			}
		})
	})
	return out
}

// SaveHF writes dir/config.json and dir/model.safetensors with every parameter in dtype (F32
// or BF16), the layout Idefics2ForConditionalGeneration.from_pretrained loads.
func (m *Model) SaveHF(dir string, dtype dtypes.DType) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := m.Config.HFJSON()
	if err != nil {
		return err
	}
	views := map[string]safetensors.TensorView{}
	for _, p := range m.Config.Params() {
		v := m.Variable(p.Name)
		if v == nil {
			return fmt.Errorf("save: %s has no value", p.Name)
		}
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("save: %s: %w", p.Name, err)
		}
		view, err := TensorToView(val, dtype)
		if err != nil {
			return fmt.Errorf("save: %s: %w", p.Name, err)
		}
		views[p.Name] = view
	}
	if err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), views, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "config.json"), append(cfg, '\n'))
}

// TensorToView encodes a float tensor as a safetensors view of dtype (F32 or BF16).
func TensorToView(t *tensors.Tensor, dtype dtypes.DType) (safetensors.TensorView, error) {
	dims := t.Shape().Dimensions
	shape := make([]uint64, len(dims))
	for i, d := range dims {
		shape[i] = uint64(d)
	}
	n := t.Size()
	var data []byte
	var st safetensors.DType
	get := func(flat any, i int) float32 {
		switch f := flat.(type) {
		case []float32:
			return f[i]
		case []bfloat16.BFloat16:
			return f[i].Float32()
		}
		panic("unsupported dtype")
	}
	switch dtype {
	case dtypes.Float32:
		st, data = safetensors.F32, make([]byte, 4*n)
		t.MustConstFlatData(func(flat any) {
			for i := 0; i < n; i++ {
				binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(get(flat, i)))
			}
		})
	case dtypes.BFloat16:
		st, data = safetensors.BF16, make([]byte, 2*n)
		t.MustConstFlatData(func(flat any) {
			for i := 0; i < n; i++ {
				binary.LittleEndian.PutUint16(data[2*i:], BF16RoundNearestEven(get(flat, i)).Bits())
			}
		})
	default:
		return safetensors.TensorView{}, fmt.Errorf("dtype %s cannot be saved (float32, bfloat16)", dtype)
	}
	return safetensors.NewTensorView(st, shape, data)
}

// WriteSafetensors writes views to path atomically (a temporary file renamed into place), so an
// interrupted write never leaves a truncated file under the final name.
func WriteSafetensors(path string, views map[string]safetensors.TensorView, meta map[string]string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := safetensors.SerializeToWriter(views, meta, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
