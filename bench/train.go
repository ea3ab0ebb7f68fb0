package bench

import (
	"strconv"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/idefics2/idefics2/internal/gradpatch"

	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
	"github.com/idefics2/idefics2/train"
)

// TrainTargets is the LoRA target set of the train step: every projection of the decoder (the
// HF fine-tuning tutorial's choice for the text model); the connector is trained fully
// (modules_to_save), the vision tower is frozen. scripts/bench_hf.py uses the same regex.
const TrainTargets = `.*text_model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$`

// TrainTargetsWithVision adds the vision tower's projections (the model card's recipe: LoRA on
// both pretrained backbones, configs/sft-card.yaml).
const TrainTargetsWithVision = `.*(text_model|vision_model).*(q_proj|k_proj|v_proj|o_proj|out_proj|fc1|fc2|gate_proj|up_proj|down_proj)$`

// fullyTrained is what the train step trains without LoRA (modules_to_save): the connector,
// unless --connector lora gives it LoRA instead (the QLoRA recipe).
func (o Options) fullyTrained() []string {
	if o.Connector == "lora" {
		return nil
	}
	return []string{"connector"}
}

// declareForPlan declares every weight by shape only, the fully trained ones (modules_to_save)
// as float32 masters, for a compile-only memory plan.
func declareForPlan(m *model.Model, modulesToSave []string) {
	full, _ := lora.ModulesToSave(m.Config, modulesToSave)
	for _, p := range m.Config.Params() {
		for _, prefix := range full {
			if p.Name == prefix || strings.HasPrefix(p.Name, prefix+".") {
				scope, name := model.VariableScope(p.Name)
				m.Ctx.InAbsPath(scope).VariableWithShape(name, shapes.Make(dtypes.Float32, p.Shape...)).SetTrainable(false)
			}
		}
	}
	m.DeclareShapes()
}

// train measures one optimizer step on one micro-batch: forward and backward (train.Stepper's
// Accumulate) then clipping and AdamW (Apply). It attaches the adapter to the model, so it runs
// after the forward and generation sections.
func (r *runner) train() *Section {
	targets := TrainTargets
	if r.o.LoRAVision {
		targets = TrainTargetsWithVision
	}
	cfg := lora.Config{R: r.o.LoRARank, LoraAlpha: float64(r.o.LoRARank), TargetModules: lora.TargetModules{Regex: targets},
		LoraDropout: r.o.LoRADropout, InitLoraWeights: "gaussian", ModulesToSave: r.o.fullyTrained(), PeftType: "LORA"}
	if r.o.Connector == "lora" {
		cfg.TargetModules.Regex = QLoRATargets
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
	if r.o.Devices > 1 {
		if _, err := train.ResolveDevices(strconv.Itoa(r.o.Devices), r.be.NumDevices(), r.o.Batch); err != nil {
			return &Section{Skipped: err.Error()}
		}
		if err := st.UseDevices(r.o.Devices, r.o.ShardOptimizer); err != nil {
			return &Section{Skipped: err.Error()}
		}
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
	if r.o.CompileOnly {
		return r.plan(st, batch)
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
	if p, err := st.RunPlan(batch); err == nil {
		// XLA's plan of the graphs just run, next to the measured peak.
		s.DevicePeakBytes, s.ResidentBytes, s.PeakGraph, s.Graphs = p.PeakBytes, p.ResidentBytes, p.PeakGraph, p.Graphs
	}
	r.logf("train: first step %.2fs, median %.1f ms (%.3g model TFLOP/s), loss %.4f, %d compiles",
		s.FirstS, s.MedianMS, s.TFLOPS, s.Loss, s.CompileCount)
	return s
}

// plan compiles the train step without running it and reports XLA's memory plan.
func (r *runner) plan(st *train.Stepper, batch *model.Batch) *Section {
	t := time.Now()
	p, err := st.Plan(batch)
	if err != nil {
		return &Section{Skipped: "memory plan: " + err.Error()}
	}
	s := &Section{CompileS: round(time.Since(t).Seconds(), 3), CompileCount: len(p.Graphs)}
	s.DevicePeakBytes, s.ResidentBytes, s.PeakGraph, s.Graphs = p.PeakBytes, p.ResidentBytes, p.PeakGraph, p.Graphs
	s.HostPeakMiB = PeakRSSMiB()
	r.logf("train (compile only): %.1fs; device peak %.2f GiB (%s), resident %.2f GiB", s.CompileS, gib(p.PeakBytes), p.PeakGraph, gib(p.ResidentBytes))
	for _, g := range p.Graphs {
		r.logf("  %-28s args %7.2f GiB  temp %7.2f GiB  out %7.2f GiB  alias %6.2f GiB", g.Name, gib(g.ArgumentBytes), gib(g.TempBytes), gib(g.OutputBytes), gib(g.AliasBytes))
	}
	return s
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
