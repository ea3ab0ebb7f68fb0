// Command idefics2-train fine-tunes Idefics2: LoRA/DoRA adapters on the vision and text
// backbones, full training of the modality connector, AdamW with schedules and gradient
// accumulation, checkpoints with exact resume. Everything is in the YAML config; see configs/.
//
//	idefics2-train --config configs/sft.yaml [--set train.lr=5e-5 ...] [--resume | --overwrite]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/idefics2/idefics2/train"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	configPath := flag.String("config", "configs/tiny.yaml", "YAML config of the run")
	resume := flag.Bool("resume", false, "continue from the newest checkpoint in train.output_dir")
	overwrite := flag.Bool("overwrite", false, "delete an earlier run found in train.output_dir first (train.overwrite_output_dir=true)")
	var sets multiFlag
	flag.Var(&sets, "set", "override a config key, key=value (repeatable); environment IDEFICS2_<KEY> works too")
	flag.Parse()
	if *overwrite {
		sets = append(sets, "train.overwrite_output_dir=true")
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	cfg, err := train.LoadConfig(*configPath, sets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idefics2-train:", err)
		os.Exit(2)
	}
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
