// Package infer loads what inference needs from a Hugging Face model directory: the model (and
// optionally a PEFT LoRA/DoRA adapter on top), the tokenizer, the image processor settings and
// the generation config, and starts a KV-cache generator on the backend. The generate and eval
// commands share it.
package infer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
)

// Options name the files and settings of an inference session.
type Options struct {
	Model     string `yaml:"path"`             // HF model directory (config.json, safetensors, generation_config.json, preprocessor_config.json)
	Adapter   string `yaml:"adapter"`          // PEFT adapter directory (adapter_config.json, adapter_model.safetensors); "" for none
	Tokenizer string `yaml:"tokenizer"`        // directory with tokenizer.json; "" means Model
	Compat    string `yaml:"tokenizer_compat"` // tokenizer compat: "trained" (default) or "transformers5"
	DType     string `yaml:"dtype"`            // float32 (default) or bfloat16
	Backend   string `yaml:"backend"`          // GoMLX backend config; "" picks as internal/backend does
	// PerceiverEps pins the perceiver RMSNorm epsilon (0 keeps config.json's: see model.Config).
	PerceiverEps float64 `yaml:"perceiver_rms_norm_eps"`
}

// Session is a loaded model ready to generate.
type Session struct {
	Model      *model.Model
	Generator  *model.Generator
	Tokenizer  *data.Tokenizer
	Images     data.ImageProcessorConfig
	Generation model.GenerationConfig
	Adapter    *lora.Adapter // nil without an adapter
}

// Load opens a session.
func Load(o Options) (*Session, error) {
	dt := dtypes.Float32
	switch o.DType {
	case "", "float32", "f32":
	case "bfloat16", "bf16":
		dt = dtypes.BFloat16
	default:
		return nil, fmt.Errorf("dtype %q: want float32 or bfloat16", o.DType)
	}
	cfg, err := model.LoadConfig(filepath.Join(o.Model, "config.json"))
	if err != nil {
		return nil, err
	}
	if o.PerceiverEps > 0 {
		cfg.SetPerceiverEps(o.PerceiverEps)
	}
	ck, err := model.OpenCheckpoint(o.Model)
	if err != nil {
		return nil, err
	}
	if err := ck.CheckFinite(); err != nil {
		ck.Close()
		return nil, err
	}
	m := model.New(cfg, dt)
	err = m.LoadWeights(ck)
	ck.Close()
	if err != nil {
		return nil, err
	}
	s := &Session{Model: m}
	if o.Adapter != "" {
		ac, err := lora.ReadConfig(filepath.Join(o.Adapter, "adapter_config.json"))
		if err != nil {
			return nil, err
		}
		if s.Adapter, err = lora.Attach(m, ac, 0); err != nil {
			return nil, err
		}
		if err := lora.LoadAdapterWeights(s.Adapter, filepath.Join(o.Adapter, "adapter_model.safetensors")); err != nil {
			return nil, err
		}
	}
	compat, err := data.ParseCompat(o.Compat)
	if err != nil {
		return nil, err
	}
	tokDir := o.Tokenizer
	if tokDir == "" {
		tokDir = o.Model
	}
	if s.Tokenizer, err = data.LoadTokenizer(tokDir, compat); err != nil {
		return nil, err
	}
	s.Images = data.DefaultImageProcessorConfig()
	if p := filepath.Join(o.Model, "preprocessor_config.json"); exists(p) {
		if s.Images, err = data.LoadImageProcessorConfig(p); err != nil {
			return nil, err
		}
	}
	s.Generation = model.DefaultGenerationConfig()
	if p := filepath.Join(o.Model, "generation_config.json"); exists(p) {
		if s.Generation, err = model.LoadGenerationConfig(p, s.Generation); err != nil {
			return nil, err
		}
	}
	be, err := backend.New(decodeBackend(o.Backend))
	if err != nil {
		return nil, err
	}
	if s.Generator, err = model.NewGenerator(m, be); err != nil {
		return nil, err
	}
	return s, nil
}

// Processor returns an Idefics2 processor for the session, with image splitting as given.
func (s *Session) Processor(splitting bool) (*data.Processor, error) {
	ip := s.Images
	ip.DoImageSplitting = splitting
	p, err := data.NewProcessor(s.Tokenizer, ip)
	if err != nil {
		return nil, err
	}
	p.ImageSeqLen = s.Model.Config.Perceiver.NLatents
	return p, nil
}

// Close releases the tokenizer.
func (s *Session) Close() {
	if s.Tokenizer != nil {
		s.Tokenizer.Close()
	}
}

// decodeBackend adds dotgeneral_small to a pure Go backend configuration that does not choose
// a DotGeneral kernel: the blocked ("large") kernel, which the backend picks by output size,
// re-blocks the whole weight for every one-row product, which makes the LM head of a decode step
// about 25× slower than the direct kernel (measured: 0.7 s against 29 ms for a 32003×512 head).
func decodeBackend(config string) string {
	if config == "" {
		config = os.Getenv("GOMLX_BACKEND")
	}
	name, opts, _ := strings.Cut(config, ":")
	if name != "go" || strings.Contains(opts, "dotgeneral_") {
		return config
	}
	if opts == "" {
		return "go:parallelism=-1,dotgeneral_small"
	}
	return config + ",dotgeneral_small"
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, os.ErrNotExist)
}
