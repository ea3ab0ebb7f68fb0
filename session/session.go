// Package session loads what inference needs from a Hugging Face model directory: the model
// (optionally with a PEFT LoRA/DoRA adapter on top), the tokenizer, the image processor
// settings and the generation config, and starts a KV-cache generator on the backend. Every
// command that runs the model (generate, eval, adapter logits, the trainer's generate_eval, the
// server) goes through it, so a model directory means the same thing everywhere.
package session

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
)

// Options name the files and settings of a session; they are the `model` section of the eval
// and generate configs.
type Options struct {
	Path      string `mapstructure:"path" check:"nonempty"` // HF model directory (config.json, safetensors, generation_config.json, preprocessor_config.json)
	Adapter   string `mapstructure:"adapter"`               // PEFT adapter directory (adapter_config.json, adapter_model.safetensors); "" for none
	Tokenizer string `mapstructure:"tokenizer"`             // directory with tokenizer.json; "" means Path
	// Compat is the tokenizer behaviour: trained (transformers 4.40, how Idefics2 was trained) or transformers5.
	Compat  string `mapstructure:"tokenizer_compat" check:"oneof=|trained|transformers5"`
	DType   string `mapstructure:"dtype" check:"oneof=|float32|bfloat16"` // compute dtype; "" is float32
	Backend string `mapstructure:"backend"`                               // GoMLX backend config; "" picks as internal/backend does
	// PerceiverEps pins the perceiver RMSNorm epsilon (0 keeps config.json's: see model.Config).
	PerceiverEps float64 `mapstructure:"perceiver_rms_norm_eps" check:"min=0"`
	// MaxImagePixels refuses images with more pixels than this (0: data.DefaultMaxImagePixels,
	// Pillow's limit; −1: no limit).
	MaxImagePixels int64 `mapstructure:"max_image_pixels" check:"min=-1"`
}

// ApplyImageLimit sets the process-wide decode limit from o.MaxImagePixels.
func (o Options) ApplyImageLimit() {
	switch {
	case o.MaxImagePixels < 0:
		data.SetMaxImagePixels(0)
	case o.MaxImagePixels == 0:
		data.SetMaxImagePixels(data.DefaultMaxImagePixels)
	default:
		data.SetMaxImagePixels(o.MaxImagePixels)
	}
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

// Load opens a session: model and adapter, tokenizer, processor and generation configs, and a
// generator on the backend.
func Load(o Options) (*Session, error) {
	m, err := LoadModel(o.Path, o.DType, o.PerceiverEps)
	if err != nil {
		return nil, err
	}
	s := &Session{Model: m}
	if o.Adapter != "" {
		if s.Adapter, err = LoadAdapter(m, o.Adapter); err != nil {
			return nil, err
		}
	}
	compat, err := data.ParseCompat(o.Compat)
	if err != nil {
		return nil, err
	}
	tokDir := o.Tokenizer
	if tokDir == "" {
		tokDir = o.Path
	}
	if s.Tokenizer, err = data.LoadTokenizer(tokDir, compat); err != nil {
		return nil, err
	}
	if s.Images, err = ImageProcessorConfig(o.Path); err != nil {
		s.Close()
		return nil, err
	}
	if s.Generation, err = GenerationConfig(o.Path); err != nil {
		s.Close()
		return nil, err
	}
	be, err := backend.New(DecodeBackend(o.Backend))
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.Generator, err = model.NewGenerator(m, be); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// LoadModel reads config.json and the safetensors weights of an HF Idefics2 directory, computing
// in dtype (float32 or bfloat16); perceiverEps > 0 pins the perceiver RMSNorm epsilon.
func LoadModel(dir, dtype string, perceiverEps float64) (*model.Model, error) {
	return LoadModelQuantized(dir, dtype, perceiverEps, nil)
}

// LoadModelQuantized is LoadModel with the frozen weights stored as quantize decides from the
// model's configuration (nil: as the checkpoint holds them). Quantization happens on load, one
// tensor at a time from the mapped checkpoint.
func LoadModelQuantized(dir, dtype string, perceiverEps float64, quantize func(model.Config) (model.Quantization, error)) (*model.Model, error) {
	dt, err := model.ParseDType(dtype)
	if err != nil {
		return nil, err
	}
	cfg, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s has no config.json: download the checkpoint (idefics2-download model HuggingFaceM4/idefics2-8b --out %s) or point at an HF Idefics2 directory", dir, dir)
	}
	if err != nil {
		return nil, err
	}
	if perceiverEps > 0 {
		cfg.SetPerceiverEps(perceiverEps)
	}
	ck, err := model.OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	if err := ck.CheckFinite(); err != nil {
		return nil, err
	}
	m := model.New(cfg, dt)
	if quantize != nil {
		if m.Quant, err = quantize(cfg); err != nil {
			return nil, err
		}
	}
	return m, m.LoadWeights(ck)
}

// LoadAdapter checks the PEFT adapter directory against the model (one-line diagnostics for
// missing, unknown or mis-shaped tensors), attaches it and loads its weights.
func LoadAdapter(m *model.Model, dir string) (*lora.Adapter, error) {
	ad, err := lora.OpenAdapterDir(dir, m.Config)
	if err != nil {
		return nil, err
	}
	defer ad.Close()
	return ad.Attach(m)
}

// ImageProcessorConfig is the directory's preprocessor_config.json, or HF's defaults without one.
func ImageProcessorConfig(dir string) (data.ImageProcessorConfig, error) {
	if p := filepath.Join(dir, "preprocessor_config.json"); exists(p) {
		return data.LoadImageProcessorConfig(p)
	}
	return data.DefaultImageProcessorConfig(), nil
}

// GenerationConfig is the directory's generation_config.json over HF's defaults (eos, bad words,
// pad, sampling settings), as from_pretrained reads it.
func GenerationConfig(dir string) (model.GenerationConfig, error) {
	g := model.DefaultGenerationConfig()
	if p := filepath.Join(dir, "generation_config.json"); exists(p) {
		return model.LoadGenerationConfig(p, g)
	}
	return g, nil
}

// NewProcessor is the Idefics2 processor for a model: the image settings, with image splitting
// as given, and one image's token count from the model's perceiver.
func NewProcessor(tok *data.Tokenizer, images data.ImageProcessorConfig, splitting bool, mc model.Config) (*data.Processor, error) {
	images.DoImageSplitting = splitting
	p, err := data.NewProcessor(tok, images)
	if err != nil {
		return nil, err
	}
	p.ImageSeqLen = mc.Perceiver.NLatents
	return p, nil
}

// Processor returns the session's processor, with image splitting as given.
func (s *Session) Processor(splitting bool) (*data.Processor, error) {
	return NewProcessor(s.Tokenizer, s.Images, splitting, s.Model.Config)
}

// Close releases the tokenizer.
func (s *Session) Close() {
	if s.Tokenizer != nil {
		s.Tokenizer.Close()
	}
}

// DecodeBackend adds dotgeneral_small to a pure Go backend configuration that does not choose
// a DotGeneral kernel: the blocked ("large") kernel, which the backend picks by output size,
// re-blocks the whole weight for every one-row product, which makes the LM head of a decode step
// about 25× slower than the direct kernel (measured: 0.7 s against 29 ms for a 32003×512 head).
func DecodeBackend(config string) string {
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
