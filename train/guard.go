package train

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"

	"github.com/idefics2/idefics2/internal/xlastats"
	"github.com/idefics2/idefics2/model"
)

// The memory guard: before step 1 the trainer compiles the step for its largest batch shape (the
// last sequence bucket, every row with the largest image bucket's images) and reads XLA's plan.
// A plan over the device's memory stops the run with one line saying what to change, instead
// of an out-of-memory error minutes into training. The plan replaces a hand-written estimate: it
// is XLA's own buffer assignment, attention's T² terms and all.

// planBatch is a zero batch of the largest shape the run's buckets allow.
func planBatch(cfg Config, c model.Config) *model.Batch {
	T := cfg.Data.MaxLength
	if n := len(cfg.Data.SeqBuckets); n > 0 {
		T = cfg.Data.SeqBuckets[n-1]
	}
	side := c.Vision.ImageSize
	if n := len(cfg.Data.ImageBuckets); n > 0 {
		side = cfg.Data.ImageBuckets[n-1]
	}
	perRow := 1
	if cfg.Data.DoImageSplitting {
		perRow = 5
	}
	return model.ZeroBatch(c, cfg.Train.BatchSize, T, cfg.Train.BatchSize*perRow, side/c.Vision.PatchSize, side/c.Vision.PatchSize)
}

// guardMemory prints the compiled plan of the largest batch and refuses it when it exceeds
// limit bytes (0: no limit known, only print). Backends without plans (pure Go) are skipped.
func guardMemory(w io.Writer, st *Stepper, cfg Config, limit int64) error {
	b := planBatch(cfg, st.Model.Config)
	p, err := st.Plan(b)
	if errors.Is(err, xlastats.ErrNoStats) {
		return nil
	}
	if err != nil {
		return err
	}
	where := "device"
	if n := st.Devices(); n > 1 {
		where = fmt.Sprintf("per-device (%d devices)", n)
	}
	fmt.Fprintf(w, "memory plan (XLA): batch %d×%d with %d image(s) of %d² px: %s peak %.2f GiB (%s; %.2f GiB resident: weights, masters, AdamW state, accumulators)\n",
		b.B, b.T, b.M, b.Hp*b.Patch, where, gib(p.PeakBytes), p.PeakGraph, gib(p.ResidentBytes))
	if limit > 0 && p.PeakBytes > limit {
		return fmt.Errorf("batch %d×%d needs %.1f GiB of device memory and the device has %.1f GiB: lower train.batch_size (raise train.grad_accum to keep the effective batch), lower data.max_length and data.seq_buckets, keep train.gradient_checkpointing on, or set train.device_memory_gib if the device has more",
			b.B, b.T, gib(p.PeakBytes), gib(limit))
	}
	return nil
}

// deviceMemory is train.device_memory_gib when set, else the first GPU's memory as nvidia-smi
// reports it for a CUDA backend, else 0 (unknown: the plan is printed, nothing is refused).
func deviceMemory(cfg Config, backendName string) int64 {
	if cfg.Train.DeviceMemoryGiB > 0 {
		return int64(cfg.Train.DeviceMemoryGiB * (1 << 30))
	}
	if !strings.Contains(strings.ToLower(backendName), "cuda") {
		return 0
	}
	out, err := exec.Command("nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0").Output()
	if err != nil {
		return 0
	}
	mib, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return 0
	}
	return int64(mib * (1 << 20))
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
