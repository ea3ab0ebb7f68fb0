package bench

import (
	"time"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/model"
)

// forward measures model.Forward plus the loss on one synthetic batch: the graph returns the
// float32 logits and the mean loss, as HF's forward with labels does; reading the loss back
// waits for the computation.
func (r *runner) forward() *Section {
	cfg := r.m.Config
	sh := r.res.Shape
	batch, err := model.NewBatch(cfg, SyntheticInputs(cfg, sh, r.o.Seed))
	if err != nil {
		return &Section{Skipped: err.Error()}
	}
	compiles := 0
	exec, err := context.NewExecAny(r.be, r.m.Ctx, func(ctx *context.Context, nodes []*Node) []*Node {
		compiles++
		in := model.GraphInputsOf(nodes, true)
		out := r.m.Forward(ctx, in)
		return []*Node{model.MeanLoss(model.CrossEntropy(out.Logits, in.Targets)), out.Logits}
	})
	if err != nil {
		return &Section{Skipped: err.Error()}
	}
	defer exec.Finalize()
	var args []any
	for _, t := range batch.Tensors() {
		args = append(args, t)
	}
	s := &Section{Iters: r.o.Iters}
	t0 := time.Now()
	if err := exec.PreCompile(args...); err != nil {
		return &Section{Skipped: "compile: " + err.Error()}
	}
	s.CompileS = round(time.Since(t0).Seconds(), 3)
	call := func() (time.Duration, error) {
		t := time.Now()
		outs, err := exec.Exec(args...)
		if err != nil {
			return 0, err
		}
		s.Loss = float64(tensors.ToScalar[float32](outs[0]))
		d := time.Since(t)
		for _, o := range outs {
			o.FinalizeAll()
		}
		return d, nil
	}
	first, err := call()
	if err != nil {
		return &Section{Skipped: "forward: " + err.Error()}
	}
	s.FirstS = round(first.Seconds(), 3)
	var ds []time.Duration
	for i := 0; i < r.o.Iters; i++ {
		d, err := call()
		if err != nil {
			return &Section{Skipped: "forward: " + err.Error()}
		}
		ds = append(ds, d)
	}
	med, mn := timings(ds)
	s.MedianMS, s.MinMS = ms(med), ms(mn)
	s.CompileCount = compiles
	flops := r.res.FLOPs.Total()
	r.fillRates(s, flops, med)
	s.HostPeakMiB = PeakRSSMiB()
	s.DevicePeakMiB = r.gpuMem.PeakMiB()
	r.logf("forward: compile %.2fs, first %.2fs, median %.1f ms (%.3g model TFLOP/s), loss %.4f",
		s.CompileS, s.FirstS, s.MedianMS, s.TFLOPS, s.Loss)
	return s
}

// fillRates derives throughputs from the median time of one call over one batch.
func (r *runner) fillRates(s *Section, flops float64, med time.Duration) {
	sec := med.Seconds()
	if sec <= 0 {
		return
	}
	sh := r.res.Shape
	s.ModelGFLOP = round(flops/1e9, 3)
	s.TFLOPS = flops / sec / 1e12
	if r.res.Peak.TFLOPS > 0 {
		s.MFU = s.TFLOPS / r.res.Peak.TFLOPS
	}
	s.SamplesPerS = float64(sh.Batch) / sec
	s.TokensPerS = float64(sh.Batch*sh.Seq) / sec
}
