// Command idefics2-eval scores an Idefics2 model (optionally with an adapter) on DocVQA (ANLS)
// or TextVQA (VQA accuracy) from a local copy of the lmms-lab datasets, reproducing the prompt,
// image splitting, generation length and metric of lmms-eval or VLMEvalKit. It writes
// predictions.jsonl and report.json.
//
//	idefics2-eval --config configs/eval-docvqa.yaml [--set eval.limit=200]
//	idefics2-eval --model DIR --task textvqa --preset vlmevalkit --data /data/lmms-lab/textvqa --limit 200 --out runs/eval
//
// Flags are shorthands for config keys and override the config file.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/idefics2/idefics2/config"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/session"
)

// Config is the YAML config: the model to load and the evaluation to run.
type Config struct {
	Model session.Options `mapstructure:"model"`
	Eval  eval.Config     `mapstructure:"eval"`
}

// Validate asks for what every evaluation needs.
func (c Config) Validate() error {
	if c.Eval.Data == "" || c.Eval.Task == "" || c.Eval.Preset == "" {
		return fmt.Errorf("need a task, a preset and a data directory (--task, --preset, --data or eval.* in --config)")
	}
	return nil
}

const usage = `usage: idefics2-eval --config FILE [--set key=value ...]
       idefics2-eval --model DIR --task docvqa|textvqa --preset lmms-eval|vlmevalkit --data DIR [--limit N] [--out DIR]`

func main() {
	cfg := Config{Eval: eval.Config{Progress: true}}
	fs := config.NewFlags("idefics2-eval", usage, &cfg)
	fs.Bind("model", "model.path", "Hugging Face model directory")
	fs.Bind("adapter", "model.adapter", "PEFT adapter directory")
	fs.Bind("tokenizer", "model.tokenizer", "tokenizer directory (default: the model directory)")
	fs.Bind("dtype", "model.dtype", "compute dtype: float32 or bfloat16")
	fs.Bind("max-image-pixels", "model.max_image_pixels", "refuse images with more pixels than this (0: Pillow's limit, 178956970; -1: no limit)")
	fs.Bind("backend", "model.backend", "GoMLX backend (default: $GOMLX_BACKEND, else XLA if a PJRT plugin loads, else the pure Go backend)")
	fs.Bind("task", "eval.task", "docvqa or textvqa")
	fs.Bind("preset", "eval.preset", "lmms-eval or vlmevalkit")
	fs.Bind("data", "eval.data", "local lmms-lab dataset root (lmms-lab/DocVQA or lmms-lab/textvqa layout)")
	fs.Bind("split", "eval.split", "dataset split (default validation)")
	fs.Bind("limit", "eval.limit", "evaluate the first N samples only (0: all)")
	fs.Bind("batch-size", "eval.batch_size", "samples generated together (left padded)")
	fs.Bind("max-new-tokens", "eval.max_new_tokens", "override the preset's max_new_tokens (0: the preset's)")
	fs.Bind("splitting", "eval.splitting", "override the preset's image splitting: on or off")
	fs.Bind("out", "eval.out_dir", "output directory for predictions.jsonl and report.json")
	if err := fs.Parse(os.Args[1:], &cfg); err != nil {
		if errors.Is(err, config.ErrHelp) {
			os.Exit(2)
		}
		fail(2, err)
	}
	cfg.Model.ApplyImageLimit()
	if _, err := cfg.Eval.Resolve(); err != nil {
		fail(2, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := session.Load(cfg.Model)
	if err != nil {
		fail(1, err)
	}
	defer s.Close()
	tk, _ := eval.ParseTask(cfg.Eval.Task)
	src, err := eval.OpenLmmsLab(tk, cfg.Eval.Data, cfg.Eval.Split)
	if err != nil {
		fail(1, err)
	}
	pred := eval.NewModelPredictor(s.Generator, s.Tokenizer, s.Images, s.Generation)
	rep, err := eval.Run(ctx, cfg.Eval, src, pred)
	if err != nil {
		fail(1, err)
	}
	st := s.Generator.Stats()
	fmt.Printf("%s %s (%s): %s = %.4f (%s %.2f) over %d samples, %d errors, %d hit max_new_tokens; %.2f samples/s; compiles: prefill %d, decode step %d\n",
		rep.Task, rep.Split, rep.Preset, rep.Metric, rep.Score, rep.ReportedAs, rep.Reported, rep.Samples, rep.Errors, rep.Truncated,
		rep.PerSecond, st.PrefillCompiles, st.StepCompiles)
	if cfg.Eval.OutDir != "" {
		fmt.Printf("predictions and report in %s\n", cfg.Eval.OutDir)
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "idefics2-eval:", err)
	os.Exit(code)
}
