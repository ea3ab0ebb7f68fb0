// Command idefics2-generate answers a prompt about images with an Idefics2 model (optionally with
// a LoRA/DoRA adapter), decoding with a KV cache on the host loop HF generate uses.
//
//	idefics2-generate --model DIR [--adapter DIR] --image page.png [--image b.jpg] --prompt "What is the total?"
//
// The prompt becomes one user turn of the chat template (images first, then the text) with the
// generation prompt, as HF's processor.apply_chat_template does; --raw takes the prompt as the
// full model text instead (with literal <image> placeholders). Decoding is greedy unless
// --sample; eos, bad words and pad come from the model's generation_config.json (idefics2-8b:
// eos {2, 32002}, <fake_token_around_image> and <image> banned).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/internal/infer"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var o infer.Options
	var images multiFlag
	flag.StringVar(&o.Model, "model", "", "Hugging Face model directory (required)")
	flag.StringVar(&o.Adapter, "adapter", "", "PEFT adapter directory (adapter_config.json + adapter_model.safetensors)")
	flag.StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer directory (default: the model directory)")
	flag.StringVar(&o.Compat, "tokenizer-compat", "trained", "tokenizer behaviour: trained (transformers 4.40, how Idefics2 was trained) or transformers5")
	flag.StringVar(&o.DType, "dtype", "float32", "compute dtype: float32 or bfloat16")
	flag.StringVar(&o.Backend, "backend", "", "GoMLX backend (default: $GOMLX_BACKEND, else XLA if a PJRT plugin loads, else the pure Go backend)")
	flag.Var(&images, "image", "image file (repeatable; order = prompt order)")
	prompt := flag.String("prompt", "", "the question or instruction")
	raw := flag.Bool("raw", false, "use --prompt as the full model text (chat template already applied, literal <image> placeholders)")
	splitting := flag.String("splitting", "", "image splitting: on, off, or empty for preprocessor_config.json's setting")
	maxNew := flag.Int("max-new-tokens", 256, "maximum number of new tokens")
	sample := flag.Bool("sample", false, "sample instead of greedy decoding")
	temp := flag.Float64("temperature", 1, "sampling temperature")
	topK := flag.Int("top-k", -1, "top-k when sampling (-1: generation_config.json's, else HF's 50; 0 disables)")
	topP := flag.Float64("top-p", 1, "nucleus sampling threshold")
	rep := flag.Float64("repetition-penalty", 1, "repetition penalty (HF semantics, also applies to greedy)")
	seed := flag.Uint64("seed", 0, "sampling seed")
	stats := flag.Bool("stats", false, "print timing and compile counts to stderr")
	maxPixels := flag.Int64("max-image-pixels", data.DefaultMaxImagePixels, "refuse images with more pixels than this (Pillow's limit; 0: no limit)")
	flag.Parse()
	data.SetMaxImagePixels(*maxPixels)
	if o.Model == "" || *prompt == "" {
		fmt.Fprintln(os.Stderr, "usage: idefics2-generate --model DIR [--adapter DIR] [--image FILE ...] --prompt TEXT")
		flag.PrintDefaults()
		os.Exit(2)
	}
	if err := run(o, images, *prompt, *raw, *splitting, *maxNew, *sample, *temp, *topK, *topP, *rep, *seed, *stats); err != nil {
		fmt.Fprintln(os.Stderr, "idefics2-generate:", err)
		os.Exit(1)
	}
}

func run(o infer.Options, images []string, prompt string, raw bool, splitting string, maxNew int, sample bool,
	temp float64, topK int, topP, rep float64, seed uint64, stats bool) error {
	start := time.Now()
	s, err := infer.Load(o)
	if err != nil {
		return err
	}
	defer s.Close()
	loaded := time.Since(start)

	gc := s.Generation
	gc.MaxNewTokens, gc.DoSample, gc.RepetitionPenalty, gc.Seed = maxNew, sample || gc.DoSample, rep, seed
	if sample {
		gc.Temperature, gc.TopP = temp, topP
		if topK >= 0 {
			gc.TopK = topK
		}
	}
	split := s.Images.DoImageSplitting
	switch splitting {
	case "":
	case "on":
		split = true
	case "off":
		split = false
	default:
		return fmt.Errorf("--splitting %q: want on, off or empty", splitting)
	}
	text := prompt
	if !raw {
		msg := data.Message{Role: "user"}
		for range images {
			msg.Content = append(msg.Content, data.ImageItem())
		}
		msg.Content = append(msg.Content, data.Text(prompt))
		if text, err = data.RenderChat([]data.Message{msg}, true); err != nil {
			return err
		}
	}
	var blobs [][]byte
	for _, path := range images {
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
	outs, err := pred.Predict(context.Background(), []eval.Request{{Prompt: text, Images: blobs, Splitting: &split, MaxNewTokens: maxNew}})
	if err != nil {
		return err
	}
	if outs[0].Err != nil {
		return outs[0].Err
	}
	fmt.Println(strings.TrimSpace(outs[0].Text))
	if stats {
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
