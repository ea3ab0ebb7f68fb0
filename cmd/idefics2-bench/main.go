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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/idefics2/idefics2/bench"
	"github.com/idefics2/idefics2/config"
)

// Config is what to measure (the bench section) and where the results go.
type Config struct {
	Bench struct {
		Size           string   `mapstructure:"size" check:"nonempty"`
		DType          string   `mapstructure:"dtype" check:"oneof=float32|bfloat16"`
		Backend        string   `mapstructure:"backend"`
		Batch          int      `mapstructure:"batch" check:"min=1"`
		TextTokens     int      `mapstructure:"text_tokens" check:"min=1"`
		ImageSize      int      `mapstructure:"image_size" check:"min=0"`
		NewTokens      int      `mapstructure:"new_tokens" check:"min=1"`
		Iters          int      `mapstructure:"iters" check:"min=1"`
		Sections       []string `mapstructure:"sections"`
		PeakTFLOPS     float64  `mapstructure:"peak_tflops" check:"min=0"`
		LoRARank       int      `mapstructure:"lora_rank" check:"min=1"`
		StockGradients bool     `mapstructure:"stock_gradients"`
		CompileOnly    bool     `mapstructure:"compile_only"`
		Splitting      bool     `mapstructure:"splitting"`
		Attention      string   `mapstructure:"attention" check:"oneof=blocked|eager"`
		Checkpointing  bool     `mapstructure:"checkpointing"`
		LoRAVision     bool     `mapstructure:"lora_vision"`
		LoRADropout    float64  `mapstructure:"lora_dropout" check:"min=0,max=0.999"`
		Quantization   string   `mapstructure:"quantization" check:"oneof=none|nf4|fp4"`
		Connector      string   `mapstructure:"connector" check:"oneof=full|lora"`
		Devices        int      `mapstructure:"devices" check:"min=1"`
		ShardOptimizer bool     `mapstructure:"shard_optimizer"`
		Out            string   `mapstructure:"out"`
		Compare        string   `mapstructure:"compare"`
		CPUProfile     string   `mapstructure:"cpuprofile"`
	} `mapstructure:"bench"`
}

const usage = `usage: idefics2-bench [--size tiny|small|8b|config.json[,...]] [--out FILE] [--set bench.key=value ...]
       idefics2-bench --compare OURS.json,HF.json`

func main() {
	if err := run(); err != nil {
		if !errors.Is(err, config.ErrHelp) {
			fmt.Fprintln(os.Stderr, "idefics2-bench:", err)
		}
		os.Exit(1)
	}
}

func run() error {
	d := bench.DefaultOptions()
	var cfg Config
	b := &cfg.Bench
	b.Size, b.DType, b.Batch, b.TextTokens, b.NewTokens, b.Iters = d.Size, d.DType, d.Batch, d.TextTokens, d.NewTokens, d.Iters
	b.Sections, b.LoRARank = d.Sections, d.LoRARank
	b.Attention, b.Checkpointing = d.Attention, d.Checkpointing
	b.Quantization, b.Connector = "none", "full"
	b.Devices = 1
	fs := config.NewFlags("idefics2-bench", usage, &cfg)
	fs.Bind("size", "bench.size", "model configuration: tiny (the committed test fixture), small (~100M), 8b (Idefics2-8B shapes), or a config.json path; a comma list runs several")
	fs.Bind("dtype", "bench.dtype", "compute dtype: float32 or bfloat16")
	fs.Bind("backend", "bench.backend", "backend configuration (default $GOMLX_BACKEND, else XLA if a plugin loads, else the pure Go backend)")
	fs.Bind("batch", "bench.batch", "rows per batch (each with one image)")
	fs.Bind("text-tokens", "bench.text_tokens", "text tokens per row; the row also holds the image's latents+2 tokens")
	fs.Bind("image-size", "bench.image_size", "image side in pixels (0: the config's image_size, i.e. full resolution)")
	fs.Bind("new-tokens", "bench.new_tokens", "tokens per generate call")
	fs.Bind("iters", "bench.iters", "timed repetitions per section, after one warm-up call")
	fs.Bind("sections", "bench.sections", "sections to run: forward, train, generate (a comma list)")
	fs.Bind("peak-tflops", "bench.peak_tflops", "peak dense TFLOP/s for MFU (default: a table of GPUs; none for CPUs)")
	fs.Bind("lora-rank", "bench.lora_rank", "LoRA rank of the train step")
	fs.Bind("out", "bench.out", "JSON output file (with several sizes: a directory, one ours-<size>.json each)")
	fs.Bind("compare", "bench.compare", "OURS.json,HF.json: print the side-by-side table with ratios and exit (one file: its own table)")
	fs.Bind("cpuprofile", "bench.cpuprofile", "write a Go CPU profile of the run to this file")
	fs.Bind("stock-gradients", "bench.stock_gradients", "train step with GoMLX's own gradient rules (to measure internal/gradpatch; XLA backends only)")
	fs.Bind("compile-only", "bench.compile_only", "compile the train step without running it and report XLA's memory plan (train.device_peak_bytes, train.graphs); weights are declared by shape only, so --size 8b fits a small host")
	fs.Bind("splitting", "bench.splitting", "5 images per row (image splitting: 4 crops + the whole image, padded to --image-size)")
	fs.Bind("attention", "bench.attention", "attention: blocked (memory-efficient) or eager (HF's eager attention as written)")
	fs.Bind("checkpointing", "bench.checkpointing", "recompute decoder and vision layers in the backward pass (gradient checkpointing)")
	fs.Bind("lora-dropout", "bench.lora_dropout", "LoRA dropout of the train step (0: as scripts/bench_hf.py; the recipes use 0.1)")
	fs.Bind("lora-vision", "bench.lora_vision", "LoRA on the vision tower too (the model card's recipe, configs/sft-card.yaml)")
	fs.Bind("quantization", "bench.quantization", "frozen Linear weights in 4 bits: nf4, fp4 or none (double-quantized scales, as QLoRA)")
	fs.Bind("devices", "bench.devices", "train step data-parallel over this many devices (the batch splits over them; train.devices)")
	fs.Bind("shard-optimizer", "bench.shard_optimizer", "with --devices: shard the float32 masters, AdamW moments and gradient accumulators over the devices (train.shard_optimizer)")
	fs.Bind("connector", "bench.connector", "train step: the connector fully trained (full) or LoRA'd by the QLoRA tutorial's regex (lora)")
	if err := fs.Parse(os.Args[1:], &cfg); err != nil {
		return err
	}
	cpuprofile, compare, out := &b.CPUProfile, &b.Compare, &b.Out
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
		a, h, ok := strings.Cut(*compare, ",")
		ours, err := bench.ReadResult(a)
		if err != nil {
			return err
		}
		if !ok {
			// One file: its own table, for a run whose other side is missing.
			ours.PrintTable(os.Stdout)
			return nil
		}
		hf, err := bench.ReadResult(h)
		if err != nil {
			return err
		}
		bench.Compare(os.Stdout, ours, hf)
		return nil
	}

	sizes := strings.Split(b.Size, ",")
	for _, s := range sizes {
		o := d
		o.Size, o.DType, o.Backend = s, b.DType, b.Backend
		o.StockGradients = b.StockGradients
		o.CompileOnly, o.Splitting, o.Attention, o.Checkpointing, o.LoRAVision = b.CompileOnly, b.Splitting, b.Attention, b.Checkpointing, b.LoRAVision
		o.Quantization, o.Connector, o.LoRADropout = b.Quantization, b.Connector, b.LoRADropout
		o.Devices, o.ShardOptimizer = b.Devices, b.ShardOptimizer
		o.Batch, o.TextTokens, o.ImageSize, o.NewTokens, o.Iters = b.Batch, b.TextTokens, b.ImageSize, b.NewTokens, b.Iters
		o.Sections = nil
		for _, sec := range b.Sections { // --sections forward,train or repeated --sections
			o.Sections = append(o.Sections, strings.Split(sec, ",")...)
		}
		o.PeakTFLOPS, o.LoRARank = b.PeakTFLOPS, b.LoRARank
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
