package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/cauldron"
	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
	"github.com/idefics2/idefics2/session"
)

// Result summarises a finished run.
type Result struct {
	Steps       int
	FirstLoss   float64
	FinalLoss   float64
	OutputDir   string
	AdapterDir  string
	Compiles    int
	SkipSummary string
}

// Run trains as cfg says. With resume it continues from the newest checkpoint of the run in the
// output directory (bit for bit: same data order, dropout masks and optimizer state); without
// it the directory must hold no earlier run, unless train.overwrite_output_dir deletes it. The
// directory is locked for the run's duration (see openRunDir). It is shaped as torchtune's
// recipes are: setup (small setup* steps), then train.
func Run(ctx context.Context, cfg Config, resume bool, log *slog.Logger) (*Result, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &recipe{cfg: cfg, log: log, out: cfg.Train.OutputDir}
	defer r.close()
	if err := r.setup(ctx, resume); err != nil {
		return nil, err
	}
	return r.train()
}

// recipe is one training run: what setup builds and train uses.
type recipe struct {
	cfg     Config
	log     *slog.Logger
	out     string
	rd      *runDir
	ctx     context.Context
	m       *model.Model
	be      backends.Backend
	proc    *data.Processor
	adapter *lora.Adapter
	full    []string // fully trained tensors (modules_to_save)
	groups  []Group  // named optimizer groups: lora, modules_to_save
	st      *Stepper
	state   State
	sched   optim.Schedule
	total   int
	srcs    []cauldron.Source
	pipe    *Pipeline
	metrics *metricsFile
	closers []func()
}

func (r *recipe) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

func (r *recipe) setup(ctx context.Context, resume bool) error {
	for _, step := range []func() error{
		func() error { return r.setupRunDir(resume) },
		r.setupModel,
		r.setupAdapter,
		r.setupOptimizer,
		r.setupDevice,
		r.setupSchedule,
		func() error { return r.setupResume(resume) },
		func() error { return r.setupData(ctx) },
		r.setupMetrics,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// setupRunDir locks the output directory for this run (refusing an earlier run's directory
// unless resuming or overwriting) and sets the image decode limit.
func (r *recipe) setupRunDir(resume bool) error {
	if err := os.MkdirAll(r.out, 0o755); err != nil {
		return err
	}
	rd, err := openRunDir(r.out, resume, r.cfg.Train.OverwriteOutputDir, r.log)
	if err != nil {
		return err
	}
	r.rd = rd
	r.closers = append(r.closers, func() { rd.Close() })
	data.SetMaxImagePixels(r.cfg.Data.MaxImagePixels)
	return nil
}

// setupModel loads the base model (building the tiny one first when the config asks), the
// backend and the processor.
func (r *recipe) setupModel() error {
	cfg := r.cfg
	if cfg.Model.Tiny {
		built, err := EnsureTiny(cfg.Model.Path, cfg.Train.Seed)
		if err != nil {
			return err
		}
		if built {
			r.log.Info("built the tiny random model", "dir", cfg.Model.Path)
		}
	}
	var err error
	quantize := func(mc model.Config) (model.Quantization, error) {
		return quantization(cfg.Model, mc, cfg.Train.ModulesToSave)
	}
	if r.m, err = session.LoadModelQuantized(cfg.Model.Path, cfg.Model.DType, cfg.Model.PerceiverEps, quantize); err != nil {
		return err
	}
	r.m.Attention, r.m.Checkpointing = cfg.Model.Attention, cfg.Train.GradientCheckpointing
	if r.be, err = backend.Shared(cfg.Backend); err != nil {
		return err
	}
	r.proc, err = newProcessor(cfg, r.m.Config)
	return err
}

// setupAdapter attaches LoRA and marks the modules_to_save tensors for full training.
func (r *recipe) setupAdapter() error {
	var err error
	r.adapter, r.full, err = attach(r.m, r.cfg)
	return err
}

// setupOptimizer builds the step function with AdamW over the named groups.
func (r *recipe) setupOptimizer() error {
	cfg := r.cfg
	opt := optim.AdamW{Beta1: cfg.Train.Beta1, Beta2: cfg.Train.Beta2, Eps: cfg.Train.Eps, MaxGradNorm: cfg.Train.MaxGradNorm}
	fullLR := cfg.Train.FullLR
	if fullLR == 0 {
		fullLR = cfg.Train.LR
	}
	r.groups = []Group{{Name: "lora", LR: cfg.Train.LR, WeightDecay: cfg.Train.WeightDecay}, {Name: "modules_to_save", LR: fullLR, WeightDecay: cfg.Train.WeightDecay}}
	var err error
	if r.st, err = NewStepper(r.be, r.m, r.adapter, r.full, opt, r.groups); err != nil {
		return err
	}
	if err := r.setupDevices(); err != nil {
		return err
	}
	return r.m.Ctx.SetRNGStateFromSeed(int64(cfg.Train.Seed))
}

// setupDevice moves the frozen weights to the device and frees their host copies.
func (r *recipe) setupDevice() error {
	freed, err := r.m.ToDevice(r.be)
	if freed > 0 {
		r.log.Info("frozen weights on the device; host copies freed", "GiB", fmt.Sprintf("%.2f", float64(freed)/(1<<30)))
	}
	return err
}

// setupSchedule counts the run's optimizer steps and builds the learning-rate schedule.
func (r *recipe) setupSchedule() error {
	cfg := r.cfg
	var err error
	if r.srcs, err = Sources(cfg.Data.Train); err != nil {
		return err
	}
	if r.total, err = totalSteps(cfg, r.srcs); err != nil {
		return err
	}
	r.sched = optim.Schedule{Kind: cfg.Train.Scheduler, LR: 1, WarmupSteps: cfg.Train.WarmupSteps, TotalSteps: r.total}
	return r.sched.Validate()
}

// setupResume loads this run's newest valid checkpoint when resuming (one within the run's
// steps; a broken newest one falls back to the previous with a warning).
func (r *recipe) setupResume(resume bool) error {
	r.state = State{RunID: r.rd.ID}
	if !resume {
		return nil
	}
	var err error
	r.state, err = resumeCheckpoint(r.st, r.out, r.rd.ID, r.total, r.log)
	return err
}

// setupData starts the data pipeline at the resumed cursor.
func (r *recipe) setupData(ctx context.Context) error {
	cfg, srcs := r.cfg, r.srcs
	var err error
	var cursor *cauldron.Cursor
	if r.state.Step > 0 {
		cursor = &r.state.Cursor
	}
	streamOpts := cauldron.Options{Seed: cfg.Data.Seed, Shuffle: true, ShuffleWindow: cfg.Data.ShuffleWindow, Logger: r.log}
	if cfg.Train.MaxSteps <= 0 {
		streamOpts.Epochs = cfg.Train.Epochs
	}
	runCtx, cancel := context.WithCancel(ctx)
	r.ctx = runCtx
	r.closers = append(r.closers, cancel)
	enc, col := encodeOptions(cfg), collateOptions(cfg, data.PadRight)
	if r.pipe, err = NewPipeline(runCtx, srcs, streamOpts, cursor, r.proc, enc, col, cfg.Data.Workers); err != nil {
		return err
	}
	r.closers = append(r.closers, r.pipe.Close)
	r.pipe.Samples = r.state.Samples
	return nil
}

// setupMetrics opens metrics.jsonl, cut back to the resumed step.
func (r *recipe) setupMetrics() error {
	var err error
	if r.metrics, err = openMetrics(filepath.Join(r.out, "metrics.jsonl"), r.state.Step); err != nil {
		return err
	}
	r.closers = append(r.closers, func() { r.metrics.Close() })
	return nil
}

// train runs the optimizer steps, with eval, generate_eval, metrics and checkpoints on their
// schedules, then saves the final checkpoint, the adapter and loss.png.
func (r *recipe) train() (*Result, error) {
	cfg, out, m, st, pipe, groups, sched := r.cfg, r.out, r.m, r.st, r.pipe, r.groups, r.sched
	state, total := &r.state, r.total
	if cfg.Train.MemoryGuard && state.Step == 0 {
		if err := guardMemory(os.Stderr, st, cfg, deviceMemory(cfg, backend.Describe(r.be))); err != nil {
			return nil, err
		}
	}
	bar := newProgress(os.Stderr, total, cfg.Train.ProgressBar)

	res := &Result{OutputDir: out, FirstLoss: math.NaN()}
	if len(state.LossCurve) > 0 {
		res.FirstLoss = state.LossCurve[0].Loss
	}
	start := time.Now()
	elapsed0 := state.Elapsed
	for state.Step < total {
		stepStart := time.Now()
		batches, err := nextWindow(pipe, m.Config, cfg.Train.BatchSize, cfg.Train.GradAccum)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		numItems, tokens, samples := 0.0, 0, 0
		for _, b := range batches {
			numItems += float64(countTargets(b))
			tokens += countTokens(b)
			samples += b.B
		}
		lossSum := 0.0
		for _, b := range batches {
			sum, _, err := st.Accumulate(b, numItems)
			if err != nil {
				return nil, fmt.Errorf("step %d: %w", state.Step+1, err)
			}
			lossSum += sum
		}
		lrScale := sched.At(state.Step)
		norm, err := st.Apply([]float64{groups[0].LR * lrScale, groups[1].LR * lrScale})
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", state.Step+1, err)
		}
		state.Step = st.Steps
		state.Samples = pipe.Samples
		state.Cursor = pipe.Cursor
		loss := lossSum / math.Max(numItems, 1)
		if err := checkFinite(state.Step, loss, norm, out); err != nil {
			return nil, err
		}
		if math.IsNaN(res.FirstLoss) {
			res.FirstLoss = loss
		}
		res.FinalLoss = loss
		dt := time.Since(stepStart).Seconds()
		rec := Metrics{Step: state.Step, Loss: loss, LR: groups[0].LR * lrScale, GradNorm: norm,
			TokensPerSec: float64(tokens) / dt, SamplesPerSec: float64(samples) / dt, StepSeconds: dt,
			PaddingWaste: pipe.Waste.TokenFraction(), PixelWaste: pipe.Waste.PixelFraction(), Compiles: st.Compiles(),
			Samples: state.Samples}
		point := CurvePoint{Step: state.Step, Loss: loss}
		if cfg.Train.EvalEvery > 0 && len(cfg.Data.Eval) > 0 && state.Step%cfg.Train.EvalEvery == 0 {
			ev, err := evalLoss(r.ctx, st, cfg, r.proc, m.Config)
			if err != nil {
				return nil, fmt.Errorf("eval at step %d: %w", state.Step, err)
			}
			rec.EvalLoss, point.EvalLoss = ev, ev
		}
		if cfg.Train.GenerateEvery > 0 && state.Step%cfg.Train.GenerateEvery == 0 {
			score, err := generateEval(r.ctx, r.be, m, r.adapter, r.proc, cfg, state.Step)
			if err != nil {
				return nil, fmt.Errorf("generate_eval at step %d: %w", state.Step, err)
			}
			rec.EvalScore = &score
		}
		state.LossCurve = append(state.LossCurve, point)
		if cfg.Train.LogEvery > 0 && state.Step%cfg.Train.LogEvery == 0 {
			if err := r.metrics.Write(rec); err != nil {
				return nil, err
			}
		}
		bar.Update(state.Step, loss)
		state.Elapsed = elapsed0 + time.Since(start).Seconds()
		if cfg.Train.SaveEvery > 0 && state.Step%cfg.Train.SaveEvery == 0 {
			if _, err := st.SaveCheckpoint(out, *state, cfg.Train.KeepLast); err != nil {
				return nil, fmt.Errorf("checkpoint at step %d: %w", state.Step, err)
			}
		}
	}
	bar.Done()
	if _, err := st.SaveCheckpoint(out, *state, cfg.Train.KeepLast); err != nil {
		return nil, err
	}
	res.Steps, res.Compiles = state.Step, st.Compiles()
	if r.adapter != nil {
		res.AdapterDir = filepath.Join(out, "adapter")
		if err := lora.Export(r.adapter, res.AdapterDir, r.full, dtypes.Float32); err != nil {
			return nil, err
		}
	}
	lrAt := func(step int) float64 { return groups[0].LR * sched.At(step-1) } // as the step applied it
	if err := PlotLoss(filepath.Join(out, "loss.png"), runTitle(cfg), state.LossCurve, lrAt); err != nil {
		r.log.Warn("loss curve not written", "err", err)
	}
	res.SkipSummary = pipe.Stats().Summary()
	pipe.Stats().LogSummary()
	r.log.Info("done", "steps", res.Steps, "first_loss", res.FirstLoss, "final_loss", res.FinalLoss, "compiles", res.Compiles, "data", res.SkipSummary)
	return res, nil
}

// newProcessor is the processor of the run: its tokenizer (the tokenization Idefics2 was
// trained with) and the image settings of its data config.
func newProcessor(cfg Config, mc model.Config) (*data.Processor, error) {
	dir := cfg.Model.Tokenizer
	if dir == "" {
		dir = cfg.Model.Path
	}
	tok, err := data.LoadTokenizer(dir, data.CompatTrained)
	if err != nil {
		return nil, err
	}
	ip := data.DefaultImageProcessorConfig()
	ip.Size = data.ImageSize{LongestEdge: cfg.Data.LongestEdge, ShortestEdge: cfg.Data.ShortestEdge}
	return session.NewProcessor(tok, ip, cfg.Data.DoImageSplitting, mc)
}

func attach(m *model.Model, cfg Config) (*lora.Adapter, []string, error) {
	var adapter *lora.Adapter
	if cfg.LoRA.R > 0 {
		var err error
		if adapter, err = lora.Attach(m, cfg.AdapterConfig(), cfg.Train.Seed); err != nil {
			return nil, nil, err
		}
	}
	modules, err := lora.ModulesToSave(m.Config, cfg.Train.ModulesToSave)
	if err != nil {
		return nil, nil, err
	}
	full, err := FullTrain(m, modules)
	return adapter, full, err
}

func encodeOptions(cfg Config) data.EncodeOptions {
	e := data.EncodeOptions{Labels: data.LabelAnswers, MaxLength: cfg.Data.MaxLength, Overflow: data.OverflowSkip}
	if cfg.Data.Labels == "all" {
		e.Labels = data.LabelAll
	}
	if cfg.Data.Overflow == "drop_turns" {
		e.Overflow = data.OverflowDropTurns
	}
	return e
}

func collateOptions(cfg Config, side data.PadSide) data.CollateOptions {
	return data.CollateOptions{PadSide: side, SeqBuckets: cfg.Data.SeqBuckets, ImageBuckets: cfg.Data.ImageBuckets}
}

// totalSteps is max_steps, or the optimizer steps of `epochs` passes over the data.
func totalSteps(cfg Config, srcs []cauldron.Source) (int, error) {
	if cfg.Train.MaxSteps > 0 {
		return cfg.Train.MaxSteps, nil
	}
	_, rows, err := cauldron.CountRows(srcs, nil)
	if err != nil {
		return 0, err
	}
	perStep := int64(cfg.Train.BatchSize * cfg.Train.GradAccum)
	return int((rows*int64(cfg.Train.Epochs) + perStep - 1) / perStep), nil
}

// nextWindow reads the micro-batches of one optimizer step; a short window at the end of the
// data is used as it is.
func nextWindow(p *Pipeline, c model.Config, batch, accum int) ([]*model.Batch, error) {
	var out []*model.Batch
	for len(out) < accum {
		b, err := p.Next(c, batch)
		if errors.Is(err, io.EOF) && len(out) > 0 {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func countTargets(b *model.Batch) int {
	n := 0
	for _, t := range b.Targets {
		if t != model.IgnoreIndex {
			n++
		}
	}
	return n
}

func countTokens(b *model.Batch) int {
	n := 0
	for _, a := range b.AttentionMask {
		n += int(a)
	}
	return n
}

// evalLoss is the token-weighted mean loss over eval_batches batches of the eval sources.
func evalLoss(ctx context.Context, st *Stepper, cfg Config, proc *data.Processor, mc model.Config) (float64, error) {
	srcs, err := Sources(cfg.Data.Eval)
	if err != nil {
		return 0, err
	}
	pipe, err := NewPipeline(ctx, srcs, cauldron.Options{Seed: cfg.Data.Seed, Epochs: 1}, nil, proc, encodeOptions(cfg), collateOptions(cfg, data.PadRight), cfg.Data.Workers)
	if err != nil {
		return 0, err
	}
	defer pipe.Close()
	sum, count := 0.0, 0.0
	for i := 0; cfg.Train.EvalBatches <= 0 || i < cfg.Train.EvalBatches; i++ {
		b, err := pipe.Next(mc, cfg.Train.BatchSize)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		s, c, err := st.EvalLoss(b)
		if err != nil {
			return 0, err
		}
		sum, count = sum+s, count+c
	}
	return sum / math.Max(count, 1), nil
}

// generateEval scores generated answers with an eval preset (the same code as idefics2-eval)
// on the model as it is now, adapter included and dropout off, decoding as the model's
// generation_config.json says (eos, banned tokens), as idefics2-eval does.
func generateEval(ctx context.Context, be backends.Backend, m *model.Model, adapter *lora.Adapter, proc *data.Processor, cfg Config, step int) (float64, error) {
	ec := cfg.Train.GenerateEval
	task, err := eval.ParseTask(ec.Task)
	if err != nil {
		return 0, err
	}
	if ec.Split == "" {
		ec.Split = "validation"
	}
	src, err := eval.OpenLmmsLab(task, ec.Data, ec.Split)
	if err != nil {
		return 0, err
	}
	if adapter != nil {
		adapter.Training = false
		defer func() { adapter.Training = true }()
	}
	gen, err := model.NewGenerator(m, be)
	if err != nil {
		return 0, err
	}
	gc, err := session.GenerationConfig(cfg.Model.Path)
	if err != nil {
		return 0, err
	}
	pred := eval.NewModelPredictor(gen, proc.Tokenizer, proc.Images, gc)
	ec.OutDir = filepath.Join(cfg.Train.OutputDir, fmt.Sprintf("eval-step-%07d", step))
	rep, err := eval.Run(ctx, ec, src, pred)
	if err != nil {
		return 0, err
	}
	return rep.Score, nil
}
