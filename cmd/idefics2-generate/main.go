// Command idefics2-generate answers a prompt about images with an Idefics2 model (optionally with
// a LoRA/DoRA adapter), decoding with a KV cache on the host loop HF generate uses.
//
//	idefics2-generate --model DIR [--adapter DIR] --image page.png [--image b.jpg] --prompt "What is the total?"
//	idefics2-generate --config FILE [--set generate.max_new_tokens=64]
//
// The prompt becomes one user turn of the chat template (images first, then the text) with the
// generation prompt, as HF's processor.apply_chat_template does; --raw takes the prompt as the
// full model text instead (with literal <image> placeholders). Decoding is greedy unless
// --sample; eos, bad words and pad come from the model's generation_config.json (idefics2-8b:
// eos {2, 32002}, <fake_token_around_image> and <image> banned).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/idefics2/idefics2/config"
	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/session"
)

// Config is the model to load and what to generate.
type Config struct {
	Model    session.Options `mapstructure:"model"`
	Generate Options         `mapstructure:"generate"`
}

// Options are one generation request and its decoding settings.
type Options struct {
	Prompt            string   `mapstructure:"prompt" check:"nonempty"`
	Images            []string `mapstructure:"images"`
	Raw               bool     `mapstructure:"raw"`
	Splitting         string   `mapstructure:"splitting" check:"oneof=|on|off"`
	MaxNewTokens      int      `mapstructure:"max_new_tokens" check:"min=1"`
	Sample            bool     `mapstructure:"sample"`
	Temperature       float64  `mapstructure:"temperature" check:"gt=0"`
	TopK              int      `mapstructure:"top_k" check:"min=-1"`
	TopP              float64  `mapstructure:"top_p" check:"gt=0,max=1"`
	RepetitionPenalty float64  `mapstructure:"repetition_penalty" check:"gt=0"`
	Seed              uint64   `mapstructure:"seed"`
	Stats             bool     `mapstructure:"stats"`
}

const usage = `usage: idefics2-generate --model DIR [--adapter DIR] [--image FILE ...] --prompt TEXT
       idefics2-generate --config FILE [--set generate.prompt=TEXT ...]`

func main() {
	cfg := Config{Model: session.Options{DType: "float32", Compat: "trained"},
		Generate: Options{MaxNewTokens: 256, Temperature: 1, TopK: -1, TopP: 1, RepetitionPenalty: 1}}
	fs := config.NewFlags("idefics2-generate", usage, &cfg)
	fs.Bind("model", "model.path", "Hugging Face model directory (required)")
	fs.Bind("adapter", "model.adapter", "PEFT adapter directory (adapter_config.json + adapter_model.safetensors)")
	fs.Bind("tokenizer", "model.tokenizer", "tokenizer directory (default: the model directory)")
	fs.Bind("tokenizer-compat", "model.tokenizer_compat", "tokenizer behaviour: trained (transformers 4.40, how Idefics2 was trained) or transformers5")
	fs.Bind("dtype", "model.dtype", "compute dtype: float32 or bfloat16")
	fs.Bind("max-image-pixels", "model.max_image_pixels", "refuse images with more pixels than this (0: Pillow's limit, 178956970; -1: no limit)")
	fs.Bind("backend", "model.backend", "GoMLX backend (default: $GOMLX_BACKEND, else XLA if a PJRT plugin loads, else the pure Go backend)")
	fs.Bind("image", "generate.images", "image file (order = prompt order)")
	fs.Bind("prompt", "generate.prompt", "the question or instruction")
	fs.Bind("raw", "generate.raw", "use --prompt as the full model text (chat template already applied, literal <image> placeholders)")
	fs.Bind("splitting", "generate.splitting", "image splitting: on, off, or empty for preprocessor_config.json's setting")
	fs.Bind("max-new-tokens", "generate.max_new_tokens", "maximum number of new tokens")
	fs.Bind("sample", "generate.sample", "sample instead of greedy decoding")
	fs.Bind("temperature", "generate.temperature", "sampling temperature")
	fs.Bind("top-k", "generate.top_k", "top-k when sampling (-1: generation_config.json's, else HF's 50; 0 disables)")
	fs.Bind("top-p", "generate.top_p", "nucleus sampling threshold")
	fs.Bind("repetition-penalty", "generate.repetition_penalty", "repetition penalty (HF semantics, also applies to greedy)")
	fs.Bind("seed", "generate.seed", "sampling seed")
	fs.Bind("stats", "generate.stats", "print timing and compile counts to stderr")
	if err := fs.Parse(os.Args[1:], &cfg); err != nil {
		if !errors.Is(err, config.ErrHelp) {
			fmt.Fprintln(os.Stderr, "idefics2-generate:", err)
		}
		os.Exit(2)
	}
	cfg.Model.ApplyImageLimit()
	if err := run(cfg.Model, cfg.Generate); err != nil {
		fmt.Fprintln(os.Stderr, "idefics2-generate:", err)
		os.Exit(1)
	}
}

func run(o session.Options, g Options) error {
	start := time.Now()
	s, err := session.Load(o)
	if err != nil {
		return err
	}
	defer s.Close()
	loaded := time.Since(start)

	gc := s.Generation
	gc.MaxNewTokens, gc.DoSample, gc.RepetitionPenalty, gc.Seed = g.MaxNewTokens, g.Sample || gc.DoSample, g.RepetitionPenalty, g.Seed
	if g.Sample {
		gc.Temperature, gc.TopP = g.Temperature, g.TopP
		if g.TopK >= 0 {
			gc.TopK = g.TopK
		}
	}
	split := s.Images.DoImageSplitting
	switch g.Splitting {
	case "on":
		split = true
	case "off":
		split = false
	}
	text := g.Prompt
	if !g.Raw {
		msg := data.Message{Role: "user"}
		for range g.Images {
			msg.Content = append(msg.Content, data.ImageItem())
		}
		msg.Content = append(msg.Content, data.Text(g.Prompt))
		if text, err = data.RenderChat([]data.Message{msg}, true); err != nil {
			return err
		}
	}
	var blobs [][]byte
	for _, path := range g.Images {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := data.CheckImageHeader(b); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		blobs = append(blobs, b)
	}
	pred := eval.NewModelPredictor(s.Generator, s.Tokenizer, s.Images, gc)
	outs, err := pred.Predict(context.Background(), []eval.Request{{Prompt: text, Images: blobs, Splitting: &split, MaxNewTokens: g.MaxNewTokens}})
	if err != nil {
		return err
	}
	if outs[0].Err != nil {
		return outs[0].Err
	}
	fmt.Println(strings.TrimSpace(outs[0].Text))
	if g.Stats {
		st := s.Generator.Stats()
		decode := 0.0
		if st.StepTime > 0 {
			decode = float64(st.Tokens) / st.StepTime.Seconds()
		}
		fmt.Fprintf(os.Stderr, "load %s; prefill %s; %d new tokens (%s), decode %.1f tokens/s; compiles: prefill %d, decode step %d\n",
			loaded.Round(time.Millisecond), st.PrefillTime.Round(time.Millisecond), outs[0].NewTokens,
			map[bool]string{true: "stopped on eos", false: "hit max_new_tokens"}[outs[0].Stopped], decode, st.PrefillCompiles, st.StepCompiles)
	}
	return nil
}
