package model

import (
	"encoding/json"
	"fmt"
	"os"
)

// Config is Idefics2Config with every default resolved. The hub's config.json is sparse (the 8b
// file lists a handful of vision and text fields and no perceiver field at all), so the struct
// starts from the class defaults and the file only overrides what it names.
type Config struct {
	ImageTokenID       int  `json:"image_token_id"`
	TieWordEmbeddings  bool `json:"tie_word_embeddings"`
	Vision             VisionConfig
	Perceiver          PerceiverConfig
	Text               TextConfig
	FakeImageTokenID   int // <fake_token_around_image>; not in config.json, fixed by the tokenizer.
	EndOfUtteranceID   int
	PerceiverEpsForced bool // true when the caller pinned Perceiver.RMSNormEps explicitly.
}

// VisionConfig holds Idefics2VisionConfig (a SigLIP encoder).
type VisionConfig struct {
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	NumHiddenLayers   int     `json:"num_hidden_layers"`
	NumAttentionHeads int     `json:"num_attention_heads"`
	NumChannels       int     `json:"num_channels"`
	ImageSize         int     `json:"image_size"`
	PatchSize         int     `json:"patch_size"`
	HiddenAct         string  `json:"hidden_act"`
	LayerNormEps      float64 `json:"layer_norm_eps"`
	AttentionDropout  float64 `json:"attention_dropout"`
}

// PerceiverConfig holds Idefics2PerceiverConfig.
type PerceiverConfig struct {
	HiddenAct        string  `json:"hidden_act"`
	HiddenSize       int     `json:"hidden_size"`
	RMSNormEps       float64 `json:"rms_norm_eps"`
	NLatents         int     `json:"resampler_n_latents"`
	Depth            int     `json:"resampler_depth"`
	NHeads           int     `json:"resampler_n_heads"`
	HeadDim          int     `json:"resampler_head_dim"`
	NumKeyValueHeads int     `json:"num_key_value_heads"`
	AttentionDropout float64 `json:"attention_dropout"`
}

// TextConfig holds the Mistral decoder's MistralConfig.
type TextConfig struct {
	VocabSize             int             `json:"vocab_size"`
	HiddenSize            int             `json:"hidden_size"`
	IntermediateSize      int             `json:"intermediate_size"`
	NumHiddenLayers       int             `json:"num_hidden_layers"`
	NumAttentionHeads     int             `json:"num_attention_heads"`
	NumKeyValueHeads      int             `json:"num_key_value_heads"`
	HeadDim               int             `json:"head_dim"`
	HiddenAct             string          `json:"hidden_act"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RMSNormEps            float64         `json:"rms_norm_eps"`
	RopeTheta             float64         `json:"rope_theta"`
	RopeParameters        *ropeParameters `json:"rope_parameters"`
	SlidingWindow         *int            `json:"sliding_window"`
	PadTokenID            *int            `json:"pad_token_id"`
	BOSTokenID            int             `json:"bos_token_id"`
	EOSTokenID            int             `json:"eos_token_id"`
}

// ropeParameters is how transformers v5 writes rope_theta; older files have a top-level field.
type ropeParameters struct {
	RopeTheta float64 `json:"rope_theta"`
	RopeType  string  `json:"rope_type"`
}

// DefaultConfig returns the class defaults of Idefics2Config, which with the hub's sparse
// config.json resolve to idefics2-8b (spec §1.2).
func DefaultConfig() Config {
	window := 4096
	return Config{
		ImageTokenID:     32001,
		FakeImageTokenID: 32000,
		EndOfUtteranceID: 32002,
		Vision: VisionConfig{
			HiddenSize: 768, IntermediateSize: 3072, NumHiddenLayers: 12, NumAttentionHeads: 12,
			NumChannels: 3, ImageSize: 224, PatchSize: 32, HiddenAct: "gelu_pytorch_tanh", LayerNormEps: 1e-6,
		},
		Perceiver: PerceiverConfig{
			HiddenAct: "silu", HiddenSize: 4096, RMSNormEps: 1e-6, NLatents: 64, Depth: 3, NHeads: 16,
			HeadDim: 96, NumKeyValueHeads: 4,
		},
		Text: TextConfig{
			VocabSize: 32000, HiddenSize: 4096, IntermediateSize: 14336, NumHiddenLayers: 32,
			NumAttentionHeads: 32, NumKeyValueHeads: 8, HiddenAct: "silu", MaxPositionEmbeddings: 4096 * 32,
			RMSNormEps: 1e-6, RopeTheta: 10000, SlidingWindow: &window, BOSTokenID: 1, EOSTokenID: 2,
		},
	}
}

// Idefics2_8B is the resolved configuration of HuggingFaceM4/idefics2-8b: the defaults plus what
// its 684-byte config.json names.
func Idefics2_8B() Config {
	c := DefaultConfig()
	c.Vision.HiddenSize, c.Vision.ImageSize, c.Vision.IntermediateSize = 1152, 980, 4304
	c.Vision.NumAttentionHeads, c.Vision.NumHiddenLayers, c.Vision.PatchSize = 16, 27, 14
	c.Text.MaxPositionEmbeddings, c.Text.RMSNormEps, c.Text.VocabSize = 32768, 1e-5, 32003
	pad := 0
	c.Text.PadTokenID = &pad
	c.resolve()
	return c
}

// rawConfig mirrors config.json's nesting so that absent keys keep the defaults.
type rawConfig struct {
	ImageTokenID      *int             `json:"image_token_id"`
	TieWordEmbeddings *bool            `json:"tie_word_embeddings"`
	VisionConfig      *VisionConfig    `json:"vision_config"`
	PerceiverConfig   *PerceiverConfig `json:"perceiver_config"`
	TextConfig        *TextConfig      `json:"text_config"`
}

// ParseConfig resolves an HF config.json. Unknown keys are ignored on purpose: HF adds keys in
// every release, and a checkpoint must load as users have it.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	raw := rawConfig{VisionConfig: &c.Vision, PerceiverConfig: &c.Perceiver, TextConfig: &c.Text}
	if err := json.Unmarshal(data, &raw); err != nil {
		return c, err
	}
	if raw.ImageTokenID != nil {
		c.ImageTokenID = *raw.ImageTokenID
	}
	if raw.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *raw.TieWordEmbeddings
	}
	if c.Text.RopeParameters != nil && c.Text.RopeParameters.RopeTheta != 0 {
		c.Text.RopeTheta = c.Text.RopeParameters.RopeTheta
	}
	c.resolve()
	return c, c.Validate()
}

// LoadConfig reads and resolves a config.json file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// resolve applies Idefics2Config's own fix-up: a perceiver whose hidden size differs from the
// text model's takes the text hidden size and the text RMSNorm epsilon.
func (c *Config) resolve() {
	if c.Perceiver.HiddenSize != c.Text.HiddenSize {
		c.Perceiver.HiddenSize = c.Text.HiddenSize
		if !c.PerceiverEpsForced {
			c.Perceiver.RMSNormEps = c.Text.RMSNormEps
		}
	}
	if c.Text.HeadDim == 0 && c.Text.NumAttentionHeads > 0 {
		c.Text.HeadDim = c.Text.HiddenSize / c.Text.NumAttentionHeads
	}
}

// SetPerceiverEps pins the perceiver RMSNorm epsilon: 1e-5 is what the model was trained with
// (transformers 4.40), 1e-6 is what current transformers computes for the 8b config.
func (c *Config) SetPerceiverEps(eps float64) {
	c.Perceiver.RMSNormEps = eps
	c.PerceiverEpsForced = true
}

// Window returns the decoder's sliding window, 0 when there is none.
func (t TextConfig) Window() int {
	if t.SlidingWindow == nil {
		return 0
	}
	return *t.SlidingWindow
}

// PatchesPerSide is the side of the vision position-embedding grid (70 for the 8b model).
func (v VisionConfig) PatchesPerSide() int { return v.ImageSize / v.PatchSize }

// Validate rejects configurations the graph cannot build.
func (c Config) Validate() error {
	switch {
	case c.Vision.HiddenSize%c.Vision.NumAttentionHeads != 0:
		return fmt.Errorf("vision_config: hidden_size %d is not a multiple of num_attention_heads %d", c.Vision.HiddenSize, c.Vision.NumAttentionHeads)
	case c.Perceiver.NHeads%c.Perceiver.NumKeyValueHeads != 0:
		return fmt.Errorf("perceiver_config: resampler_n_heads %d is not a multiple of num_key_value_heads %d", c.Perceiver.NHeads, c.Perceiver.NumKeyValueHeads)
	case c.Text.NumAttentionHeads%c.Text.NumKeyValueHeads != 0:
		return fmt.Errorf("text_config: num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Text.NumAttentionHeads, c.Text.NumKeyValueHeads)
	case c.Vision.HiddenAct != "gelu_pytorch_tanh" && c.Vision.HiddenAct != "gelu":
		return fmt.Errorf("vision_config: hidden_act %q is not supported (gelu_pytorch_tanh, gelu)", c.Vision.HiddenAct)
	case c.Text.HiddenAct != "silu" || c.Perceiver.HiddenAct != "silu":
		return fmt.Errorf("hidden_act must be silu for the text model and the perceiver, got %q and %q", c.Text.HiddenAct, c.Perceiver.HiddenAct)
	case c.ImageTokenID < 0 || c.ImageTokenID >= c.Text.VocabSize:
		return fmt.Errorf("image_token_id %d is outside the vocabulary (%d)", c.ImageTokenID, c.Text.VocabSize)
	}
	return nil
}
