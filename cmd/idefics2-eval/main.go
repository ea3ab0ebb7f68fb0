// Command idefics2-eval scores an Idefics2 model (optionally with an adapter) on DocVQA (ANLS)
// or TextVQA (VQA accuracy) from a local copy of the lmms-lab datasets, reproducing the prompt,
// image splitting, generation length and metric of lmms-eval or VLMEvalKit. It writes
// predictions.jsonl and report.json.
//
//	idefics2-eval --config configs/eval-docvqa.yaml
//	idefics2-eval --model DIR --task textvqa --preset vlmevalkit --data /data/lmms-lab/textvqa --limit 200 --out runs/eval
//
// Flags override the config file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/internal/infer"
	"go.yaml.in/yaml/v3"
)

// File is the YAML config: the model to load and the evaluation to run.
type File struct {
	Model infer.Options `yaml:"model"`
	Eval  eval.Config   `yaml:"eval"`
}

func main() {
	path := flag.String("config", "", "YAML config (model: path, adapter, tokenizer, dtype; eval: task, preset, data, split, limit, batch_size, max_new_tokens, splitting, out_dir)")
	model := flag.String("model", "", "Hugging Face model directory")
	adapter := flag.String("adapter", "", "PEFT adapter directory")
	tokenizer := flag.String("tokenizer", "", "tokenizer directory (default: the model directory)")
	task := flag.String("task", "", "docvqa or textvqa")
	preset := flag.String("preset", "", "lmms-eval or vlmevalkit")
	dataDir := flag.String("data", "", "local lmms-lab dataset root (lmms-lab/DocVQA or lmms-lab/textvqa layout)")
	split := flag.String("split", "", "dataset split (default validation)")
	limit := flag.Int("limit", -1, "evaluate the first N samples only")
	batch := flag.Int("batch-size", 0, "samples generated together (left padded)")
	maxNew := flag.Int("max-new-tokens", 0, "override the preset's max_new_tokens")
	splitting := flag.String("splitting", "", "override the preset's image splitting: on or off")
	out := flag.String("out", "", "output directory for predictions.jsonl and report.json")
	maxPixels := flag.Int64("max-image-pixels", data.DefaultMaxImagePixels, "refuse images with more pixels than this (Pillow's limit; 0: no limit)")
	flag.Parse()
	data.SetMaxImagePixels(*maxPixels)

	var f File
	f.Eval.Progress = true
	if *path != "" {
		b, err := os.ReadFile(*path)
		if err == nil {
			dec := yaml.NewDecoder(bytesReader(b))
			dec.KnownFields(true)
			err = dec.Decode(&f)
		}
		if err != nil {
			fail(2, fmt.Errorf("%s: %w", *path, err))
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&f.Model.Model, *model)
	set(&f.Model.Adapter, *adapter)
	set(&f.Model.Tokenizer, *tokenizer)
	set(&f.Eval.Task, *task)
	set(&f.Eval.Preset, *preset)
	set(&f.Eval.Data, *dataDir)
	set(&f.Eval.Split, *split)
	set(&f.Eval.Splitting, *splitting)
	set(&f.Eval.OutDir, *out)
	if *limit >= 0 {
		f.Eval.Limit = *limit
	}
	if *batch > 0 {
		f.Eval.BatchSize = *batch
	}
	if *maxNew > 0 {
		f.Eval.MaxNewTokens = *maxNew
	}
	if f.Model.Model == "" || f.Eval.Data == "" || f.Eval.Task == "" || f.Eval.Preset == "" {
		fmt.Fprintln(os.Stderr, "idefics2-eval: need a model, a task, a preset and a data directory (flags or --config)")
		flag.PrintDefaults()
		os.Exit(2)
	}
	if _, err := f.Eval.Resolve(); err != nil {
		fail(2, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := infer.Load(f.Model)
	if err != nil {
		fail(1, err)
	}
	defer s.Close()
	tk, _ := eval.ParseTask(f.Eval.Task)
	src, err := eval.OpenLmmsLab(tk, f.Eval.Data, f.Eval.Split)
	if err != nil {
		fail(1, err)
	}
	pred := eval.NewModelPredictor(s.Generator, s.Tokenizer, s.Images, s.Generation)
	rep, err := eval.Run(ctx, f.Eval, src, pred)
	if err != nil {
		fail(1, err)
	}
	st := s.Generator.Stats()
	fmt.Printf("%s %s (%s): %s = %.4f (%s %.2f) over %d samples, %d errors, %d hit max_new_tokens; %.2f samples/s; compiles: prefill %d, decode step %d\n",
		rep.Task, rep.Split, rep.Preset, rep.Metric, rep.Score, rep.ReportedAs, rep.Reported, rep.Samples, rep.Errors, rep.Truncated,
		rep.PerSecond, st.PrefillCompiles, st.StepCompiles)
	if f.Eval.OutDir != "" {
		fmt.Printf("predictions and report in %s\n", f.Eval.OutDir)
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "idefics2-eval:", err)
	os.Exit(code)
}
