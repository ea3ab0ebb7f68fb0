// Command idefics2-train fine-tunes Idefics2: LoRA/DoRA adapters on the vision and text
// backbones, full training of the modality connector, AdamW with schedules and gradient
// accumulation, checkpoints with exact resume. Everything is in the YAML config; see configs/.
//
//	idefics2-train --config configs/sft.yaml [--set train.lr=5e-5 ...] [--resume | --overwrite]
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/idefics2/idefics2/config"
	"github.com/idefics2/idefics2/train"
)

const usage = `usage: idefics2-train [--config FILE] [--set key=value ...] [--resume]`

func main() {
	cfg := train.Defaults()
	fs := config.NewFlags("idefics2-train", usage, &cfg)
	resume := fs.Bool("resume", false, "continue from the newest checkpoint in train.output_dir")
	fs.Bind("output-dir", "train.output_dir", "where metrics, checkpoints, loss.png and the adapter go")
	fs.Bind("model", "model.path", "HF Idefics2 directory (config.json + safetensors)")
	fs.Bind("max-steps", "train.max_steps", "optimizer steps (0: train.epochs passes over the data)")
	fs.Bind("overwrite", "train.overwrite_output_dir", "delete an earlier run found in train.output_dir first")
	fs.Bind("backend", "backend", "GoMLX backend (default: $GOMLX_BACKEND, else XLA if a PJRT plugin loads, else the pure Go backend)")
	fs.DefaultConfig("configs/tiny.yaml")
	if err := fs.Parse(os.Args[1:], &cfg); err != nil {
		if !errors.Is(err, config.ErrHelp) {
			fmt.Fprintln(os.Stderr, "idefics2-train:", err)
		}
		os.Exit(2)
	}
	cfg.Source = fs.ConfigPath()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := train.Run(ctx, cfg, *resume, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idefics2-train:", err)
		os.Exit(1)
	}
	fmt.Printf("trained %d steps: loss %.4f → %.4f; adapter in %s; metrics, checkpoints and loss.png in %s\n",
		res.Steps, res.FirstLoss, res.FinalLoss, res.AdapterDir, res.OutputDir)
}
