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

// Run trains as cfg says. With resume it continues from the newest checkpoint in the output
// directory (bit for bit: same data order, dropout masks and optimizer state).
func Run(ctx context.Context, cfg Config, resume bool, log *slog.Logger) (*Result, error) {
	if log == nil {
		log = slog.Default()
	}
	out := cfg.Train.OutputDir
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	if cfg.Model.Tiny {
		built, err := EnsureTiny(cfg.Model.Path, cfg.Train.Seed)
		if err != nil {
			return nil, err
		}
		if built {
			log.Info("built the tiny random model", "dir", cfg.Model.Path)
		}
	}
	m, err := loadModel(cfg.Model, cfg.Train.ModulesToSave)
	if err != nil {
		return nil, err
	}
	be, err := backend.Shared(cfg.Backend)
	if err != nil {
		return nil, err
	}
	proc, err := newProcessor(cfg, m.Config)
	if err != nil {
		return nil, err
	}
	adapter, full, err := attach(m, cfg)
	if err != nil {
		return nil, err
	}
	opt := optim.AdamW{Beta1: cfg.Train.Beta1, Beta2: cfg.Train.Beta2, Eps: cfg.Train.Eps, MaxGradNorm: cfg.Train.MaxGradNorm}
	fullLR := cfg.Train.FullLR
	if fullLR == 0 {
		fullLR = cfg.Train.LR
	}
	groups := []Group{{Name: "lora", LR: cfg.Train.LR, WeightDecay: cfg.Train.WeightDecay}, {Name: "modules_to_save", LR: fullLR, WeightDecay: cfg.Train.WeightDecay}}
	st, err := NewStepper(be, m, adapter, full, opt, groups)
	if err != nil {
		return nil, err
	}
	if err := m.Ctx.SetRNGStateFromSeed(int64(cfg.Train.Seed)); err != nil {
		return nil, err
	}

	state := State{}
	if resume {
		if ck := LatestCheckpoint(out); ck != "" {
			if state, err = st.LoadCheckpoint(ck); err != nil {
				return nil, err
			}
			log.Info("resumed", "checkpoint", ck, "step", state.Step)
		} else {
			log.Info("no checkpoint to resume from; starting fresh", "dir", out)
		}
	}

	srcs, err := Sources(cfg.Data.Train)
	if err != nil {
		return nil, err
	}
	total, err := totalSteps(cfg, srcs)
	if err != nil {
		return nil, err
	}
	sched := optim.Schedule{Kind: cfg.Train.Scheduler, LR: 1, WarmupSteps: cfg.Train.WarmupSteps, TotalSteps: total}
	if err := sched.Validate(); err != nil {
		return nil, err
	}
	var cursor *cauldron.Cursor
	if state.Step > 0 {
		cursor = &state.Cursor
	}
	streamOpts := cauldron.Options{Seed: cfg.Data.Seed, Shuffle: true, ShuffleWindow: cfg.Data.ShuffleWindow, Logger: log}
	if cfg.Train.MaxSteps <= 0 {
		streamOpts.Epochs = cfg.Train.Epochs
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	enc, col := encodeOptions(cfg), collateOptions(cfg, data.PadRight)
	pipe, err := NewPipeline(runCtx, srcs, streamOpts, cursor, proc, enc, col, cfg.Data.Workers)
	if err != nil {
		return nil, err
	}
	defer pipe.Close()
	pipe.Samples = state.Samples

	metrics, err := openMetrics(filepath.Join(out, "metrics.jsonl"), state.Step)
	if err != nil {
		return nil, err
	}
	defer metrics.Close()
	printEstimate(os.Stderr, m, st, cfg)
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
			ev, err := evalLoss(runCtx, st, cfg, proc, m.Config)
			if err != nil {
				return nil, fmt.Errorf("eval at step %d: %w", state.Step, err)
			}
			rec.EvalLoss, point.EvalLoss = ev, ev
		}
		if cfg.Train.GenerateEvery > 0 && state.Step%cfg.Train.GenerateEvery == 0 {
			score, err := generateEval(runCtx, be, m, adapter, proc, cfg, state.Step)
			if err != nil {
				return nil, fmt.Errorf("generate_eval at step %d: %w", state.Step, err)
			}
			rec.EvalScore = &score
		}
		state.LossCurve = append(state.LossCurve, point)
		if cfg.Train.LogEvery > 0 && state.Step%cfg.Train.LogEvery == 0 {
			if err := metrics.Write(rec); err != nil {
				return nil, err
			}
		}
		bar.Update(state.Step, loss)
		state.Elapsed = elapsed0 + time.Since(start).Seconds()
		if cfg.Train.SaveEvery > 0 && state.Step%cfg.Train.SaveEvery == 0 {
			if _, err := st.SaveCheckpoint(out, state, cfg.Train.KeepLast); err != nil {
				return nil, fmt.Errorf("checkpoint at step %d: %w", state.Step, err)
			}
		}
	}
	bar.Done()
	if _, err := st.SaveCheckpoint(out, state, cfg.Train.KeepLast); err != nil {
		return nil, err
	}
	res.Steps, res.Compiles = state.Step, st.Compiles()
	if adapter != nil {
		res.AdapterDir = filepath.Join(out, "adapter")
		if err := lora.Export(adapter, res.AdapterDir, full, dtypes.Float32); err != nil {
			return nil, err
		}
	}
	if err := PlotLoss(filepath.Join(out, "loss.png"), state.LossCurve); err != nil {
		log.Warn("loss curve not written", "err", err)
	}
	res.SkipSummary = pipe.Stats().Summary()
	pipe.Stats().LogSummary()
	log.Info("done", "steps", res.Steps, "first_loss", res.FirstLoss, "final_loss", res.FinalLoss, "compiles", res.Compiles, "data", res.SkipSummary)
	return res, nil
}

func loadModel(c ModelConfig, modulesToSave []string) (*model.Model, error) {
	dtype := dtypes.Float32
	if c.DType == "bfloat16" {
		dtype = dtypes.BFloat16
	}
	cfg, err := model.LoadConfig(filepath.Join(c.Path, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("model.path %s has no config.json: download the checkpoint (idefics2-download model HuggingFaceM4/idefics2-8b --out %s) or point model.path at an HF Idefics2 directory", c.Path, c.Path)
	}
	if err != nil {
		return nil, err
	}
	if c.PerceiverEps > 0 {
		cfg.SetPerceiverEps(c.PerceiverEps)
	}
	ck, err := model.OpenCheckpoint(c.Path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	m := model.New(cfg, dtype)
	if m.Quant, err = quantization(c, cfg, modulesToSave); err != nil {
		return nil, err
	}
	return m, m.LoadWeights(ck)
}

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
	ip.DoImageSplitting = cfg.Data.DoImageSplitting
	ip.Size = data.ImageSize{LongestEdge: cfg.Data.LongestEdge, ShortestEdge: cfg.Data.ShortestEdge}
	proc, err := data.NewProcessor(tok, ip)
	if err != nil {
		return nil, err
	}
	proc.ImageSeqLen = mc.Perceiver.NLatents
	return proc, nil
}

func attach(m *model.Model, cfg Config) (*lora.Adapter, []string, error) {
	var adapter *lora.Adapter
	if cfg.LoRA.R > 0 {
		lc := lora.Config{R: cfg.LoRA.R, LoraAlpha: cfg.LoRA.Alpha, LoraDropout: cfg.LoRA.Dropout,
			TargetModules: lora.TargetModules{Regex: cfg.LoRA.TargetModules, Names: cfg.LoRA.TargetNames},
			UseDoRA:       cfg.LoRA.UseDoRA, UseRSLoRA: cfg.LoRA.UseRSLoRA, InitLoraWeights: initKind(cfg.LoRA.Init),
			RankPattern: cfg.LoRA.RankPattern, AlphaPattern: cfg.LoRA.AlphaPattern,
			ModulesToSave: cfg.Train.ModulesToSave, Bias: "none", PeftType: "LORA", BaseModel: cfg.Model.Path}
		if len(lc.TargetModules.Names) > 0 {
			lc.TargetModules.Regex = ""
		}
		var err error
		if adapter, err = lora.Attach(m, lc, cfg.Train.Seed); err != nil {
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
// on the model as it is now, adapter included and dropout off.
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
	pred := eval.NewModelPredictor(gen, proc.Tokenizer, proc.Images, model.DefaultGenerationConfig())
	ec.OutDir = filepath.Join(cfg.Train.OutputDir, fmt.Sprintf("eval-step-%07d", step))
	rep, err := eval.Run(ctx, ec, src, pred)
	if err != nil {
		return 0, err
	}
	return rep.Score, nil
}

// initKind maps the config's init names to PEFT's init_lora_weights values.
func initKind(s string) lora.InitKind {
	switch s {
	case "kaiming", "default", "true", "":
		return "true"
	}
	return lora.InitKind(s)
}
