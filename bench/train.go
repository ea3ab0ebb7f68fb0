package bench

import (
	"github.com/idefics2/idefics2/internal/gradpatch"
	"time"

	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
	"github.com/idefics2/idefics2/train"
)

// TrainTargets is the LoRA target set of the train step: every projection of the decoder (the
// HF fine-tuning tutorial's choice for the text model); the connector is trained fully
// (modules_to_save), the vision tower is frozen. scripts/bench_hf.py uses the same regex.
const TrainTargets = `.*text_model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$`

// train measures one optimizer step on one micro-batch: forward and backward (train.Stepper's
// Accumulate) then clipping and AdamW (Apply). It attaches the adapter to the model, so it runs
// after the forward and generation sections.
func (r *runner) train() *Section {
	cfg := lora.Config{R: r.o.LoRARank, LoraAlpha: float64(r.o.LoRARank), TargetModules: lora.TargetModules{Regex: TrainTargets},
		InitLoraWeights: "gaussian", ModulesToSave: []string{"connector"}, PeftType: "LORA"}
	if r.o.Connector == "lora" {
		cfg.TargetModules.Regex, cfg.ModulesToSave = QLoRATargets, nil
	}
	adapter, err := lora.Attach(r.m, cfg, r.o.Seed)
	if err != nil {
		return &Section{Skipped: err.Error()}
	}
	adapter.Training = true
	full, err := lora.ModulesToSave(r.m.Config, cfg.ModulesToSave)
	if err != nil {
		return &Section{Skipped: err.Error()}
	}
	names, err := train.FullTrain(r.m, full)
	if err != nil {
		return &Section{Skipped: err.Error()}
	}
	const lr = 1e-4
	groups := []train.Group{{Name: "lora", LR: lr}, {Name: "full", LR: lr}}
	st, err := train.NewStepper(r.be, r.m, adapter, names, optim.Defaults(), groups)
	if err != nil {
		return &Section{Skipped: err.Error()}
	}
	if r.o.StockGradients {
		// The step's graphs are built at their first run, so this takes effect for them.
		gradpatch.Uninstall()
		defer gradpatch.Install()
	}
	batch, err := model.NewBatch(r.m.Config, SyntheticInputs(r.m.Config, r.res.Shape, r.o.Seed))
	if err != nil {
		return &Section{Skipped: err.Error()}
	}
	count := 0.0
	for _, t := range batch.Targets {
		if t != model.IgnoreIndex {
			count++
		}
	}
	s := &Section{Iters: r.o.Iters}
	step := func() (time.Duration, error) {
		t := time.Now()
		sum, n, err := st.Accumulate(batch, count)
		if err != nil {
			return 0, err
		}
		if _, err := st.Apply([]float64{lr, lr}); err != nil {
			return 0, err
		}
		s.Loss = sum / max(n, 1)
		return time.Since(t), nil
	}
	first, err := step()
	if err != nil {
		return &Section{Skipped: "train step: " + err.Error()}
	}
	var ds []time.Duration
	for i := 0; i < r.o.Iters; i++ {
		d, err := step()
		if err != nil {
			return &Section{Skipped: "train step: " + err.Error()}
		}
		ds = append(ds, d)
	}
	med, mn := timings(ds)
	s.MedianMS, s.MinMS = ms(med), ms(mn)
	s.FirstS = round(first.Seconds(), 3)
	// The Stepper compiles inside its first call; the compile time is what that call took
	// beyond a steady-state step.
	s.CompileS = round(max(first-med, 0).Seconds(), 3)
	s.CompileCount = st.Compiles()
	r.fillRates(s, r.res.TrainFLOPs, med)
	s.HostPeakMiB = PeakRSSMiB()
	s.DevicePeakMiB = r.gpuMem.PeakMiB()
	r.logf("train: first step %.2fs, median %.1f ms (%.3g model TFLOP/s), loss %.4f, %d compiles",
		s.FirstS, s.MedianMS, s.TFLOPS, s.Loss, s.CompileCount)
	return s
}
