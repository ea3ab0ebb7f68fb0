// Command idefics2-bench measures the Idefics2 graph with random weights: forward pass, LoRA +
// connector train step and generation, with model FLOPs, MFU, compile counts and times and peak
// memory. It writes JSON and prints a table; with -compare it prints ours against the JSON that
// scripts/bench_hf.py wrote for Hugging Face transformers on the same configuration.
//
//	idefics2-bench -size small -out build/bench/ours-small.json
//	idefics2-bench -compare build/bench/ours-small.json,build/bench/hf-small.json
//
// The backend is $GOMLX_BACKEND (or -backend): "go" for the pure Go backend,
// "xla:/abs/path/plugin.so" for a PJRT plugin (make pjrt-cpu installs a CPU one).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/idefics2/idefics2/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "idefics2-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	d := bench.DefaultOptions()
	size := flag.String("size", d.Size, "model configuration: tiny (the committed test fixture), small (~100M), 8b (Idefics2-8B shapes), or a config.json path; a comma list runs several")
	dtype := flag.String("dtype", d.DType, "compute dtype: float32 or bfloat16")
	be := flag.String("backend", "", "backend configuration (default $GOMLX_BACKEND, else XLA if a plugin loads, else the pure Go backend)")
	batch := flag.Int("batch", d.Batch, "rows per batch (each with one image)")
	text := flag.Int("text-tokens", d.TextTokens, "text tokens per row; the row also holds the image's latents+2 tokens")
	image := flag.Int("image-size", 0, "image side in pixels (0: the config's image_size, i.e. full resolution)")
	newTok := flag.Int("new-tokens", d.NewTokens, "tokens per generate call")
	iters := flag.Int("iters", d.Iters, "timed repetitions per section, after one warm-up call")
	sections := flag.String("sections", strings.Join(d.Sections, ","), "sections to run: forward, train, generate")
	peak := flag.Float64("peak-tflops", 0, "peak dense TFLOP/s for MFU (default: a table of GPUs; none for CPUs)")
	rank := flag.Int("lora-rank", d.LoRARank, "LoRA rank of the train step")
	out := flag.String("out", "", "JSON output file (with several sizes: a directory, one ours-<size>.json each)")
	compare := flag.String("compare", "", "OURS.json,HF.json: print the side-by-side table with ratios and exit")
	cpuprofile := flag.String("cpuprofile", "", "write a Go CPU profile of the run to this file")
	quantization := flag.String("quantization", "none", "frozen Linear weights in 4 bits: nf4, fp4 or none (double-quantized scales, as QLoRA)")
	connector := flag.String("connector", "full", "train step: the connector fully trained (full) or LoRA'd by the QLoRA tutorial's regex (lora)")
	stock := flag.Bool("stock-gradients", false, "train step with GoMLX's own gradient rules (to measure internal/gradpatch; XLA backends only)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	if *compare != "" {
		a, b, ok := strings.Cut(*compare, ",")
		if !ok {
			return fmt.Errorf("-compare wants OURS.json,HF.json")
		}
		ours, err := bench.ReadResult(a)
		if err != nil {
			return err
		}
		hf, err := bench.ReadResult(b)
		if err != nil {
			return err
		}
		bench.Compare(os.Stdout, ours, hf)
		return nil
	}

	sizes := strings.Split(*size, ",")
	for _, s := range sizes {
		o := d
		o.Size, o.DType, o.Backend = s, *dtype, *be
		o.StockGradients = *stock
		o.Quantization, o.Connector = *quantization, *connector
		o.Batch, o.TextTokens, o.ImageSize, o.NewTokens, o.Iters = *batch, *text, *image, *newTok, *iters
		o.Sections = strings.Split(*sections, ",")
		o.PeakTFLOPS, o.LoRARank = *peak, *rank
		path := ""
		if *out != "" {
			path = *out
			if len(sizes) > 1 {
				path = filepath.Join(*out, "ours-"+filepath.Base(strings.TrimSuffix(s, ".json"))+".json")
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			// Written after every section: a run cut short by a time limit keeps what it measured.
			o.OnSection = func(r *bench.Result) {
				if err := r.WriteJSON(path); err != nil {
					fmt.Fprintln(os.Stderr, "idefics2-bench:", err)
				}
			}
		}
		res, err := bench.Run(o)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		res.PrintTable(os.Stdout)
		fmt.Println()
		if path != "" {
			if err := res.WriteJSON(path); err != nil {
				return err
			}
			fmt.Fprintln(os.Stderr, "bench: wrote", path)
		}
	}
	return nil
}
