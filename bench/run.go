package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/model"
)

// Options select what Run measures.
type Options struct {
	Size       string   // "tiny", "small", "8b" or a config.json path
	DType      string   // "float32" or "bfloat16"
	Backend    string   // backend configuration ("" = $GOMLX_BACKEND, else XLA, else pure Go)
	Batch      int      // rows per batch
	TextTokens int      // text tokens per row (the row also holds latents+2 image tokens)
	ImageSize  int      // image side in pixels; 0 = the config's image_size
	NewTokens  int      // tokens per generate call
	Iters      int      // timed repetitions per section (after a warm-up call)
	Sections   []string // of "forward", "train", "generate"
	PeakTFLOPS float64  // overrides the peak table when > 0
	LoRARank   int      // LoRA rank of the train step
	// StockGradients builds the train step with GoMLX's own gradient rules instead of
	// internal/gradpatch's, to measure what the patch buys (XLA only: the stock Slice
	// gradient needs Pad, which the pure Go backend lacks).
	StockGradients bool
	// CompileOnly compiles the train step without running it and reports XLA's memory plan: the
	// variables are declared by shape only, so the 8b shapes compile on a small host.
	CompileOnly bool
	// Splitting gives each row the 5 images of Idefics2's image splitting (4 crops and the
	// whole image, each padded to ImageSize²) instead of one.
	Splitting bool
	// Attention is model.AttentionBlocked (default) or model.AttentionEager; Checkpointing
	// recomputes the decoder and vision layers in the backward pass (default on).
	Attention     string
	Checkpointing bool
	// LoRAVision puts LoRA on the vision tower's projections too (the model card's recipe).
	LoRAVision bool
	// LoRADropout is the adapter's dropout: 0 to compare with scripts/bench_hf.py (which has
	// none), 0.1 for the recipes' memory (the masks are part of what a step holds).
	LoRADropout float64
	Seed        uint64
	Log         io.Writer // progress lines; nil = os.Stderr
	// OnSection, when set, is called with the result so far after the setup and after each
	// section, so that a run stopped by a time limit still leaves what it measured.
	OnSection func(*Result)
	// Quantization stores the frozen Linears in 4 bits (nf4, fp4; "" or none = not) with
	// double-quantized scales; Connector is how the train step trains the connector: lora (the
	// QLoRA tutorial's regex) or full (modules_to_save, the default).
	Quantization string
	Connector    string
	// Devices runs the train step data-parallel over that many devices (train.devices; the
	// batch splits over them), ShardOptimizer shards its masters, AdamW moments and accumulators.
	Devices        int
	ShardOptimizer bool
}

// DefaultOptions are small enough for a 2-core CPU.
func DefaultOptions() Options {
	return Options{Size: "tiny", DType: "float32", Batch: 1, TextTokens: 64, NewTokens: 16, Iters: 3,
		Sections: []string{"forward", "train", "generate"}, LoRARank: 8, Seed: 1,
		Attention: model.AttentionBlocked, Checkpointing: true}
}

// runner carries one run's state between sections.
type runner struct {
	o      Options
	be     backends.Backend
	m      *model.Model
	res    *Result
	gpuMem *GPUMemSampler
	log    io.Writer
}

// Run builds the model with random weights and measures the selected sections.
func Run(o Options) (*Result, error) {
	cfg, _, err := LoadConfig(o.Size)
	if err != nil {
		return nil, err
	}
	dt, err := model.ParseDType(o.DType)
	if err != nil {
		return nil, err
	}
	be, err := backend.New(o.Backend)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, be: be, log: o.Log}
	if r.log == nil {
		r.log = os.Stderr
	}
	perComp, total := cfg.ParamCounts()
	hw := DetectHardware()
	hw.Backend = backend.Describe(be)
	if err := model.ValidAttention(o.Attention); err != nil {
		return nil, err
	}
	images := 1
	if o.Splitting {
		images = 5
	}
	shape := NewShape(cfg, o.Batch, o.TextTokens, o.ImageSize, o.NewTokens, images)
	r.res = &Result{
		Impl: "ours", Size: o.Size, Config: ConfigPath(o.Size), DType: dt.String(), Params: total,
		ParamsByComponent: perComp, Hardware: hw, Versions: versions(), Shape: shape,
		FLOPs: ForwardFLOPs(cfg, shape.Batch, shape.Seq, shape.Batch*images, shape.Patches), LoRARank: o.LoRARank,
	}
	r.res.DType = dtypeName(o.DType)
	r.res.TrainFLOPs = TrainFLOPs(r.res.FLOPs, LoRAParams(cfg, o.LoRARank), shape.Batch*shape.Seq)
	r.res.Peak = LookupPeak(hw.GPU, r.res.DType)
	if o.PeakTFLOPS > 0 {
		r.res.Peak = PeakFLOPS{o.PeakTFLOPS, "flag -peak-tflops"}
	}
	r.gpuMem = StartGPUMemSampler()
	defer r.gpuMem.Stop()

	r.logf("%s: %.4g M params, %s, backend %s", o.Size, float64(total)/1e6, r.res.DType, hw.Backend)
	ResetPeakRSS()
	start := time.Now()
	r.m = model.New(cfg, dt)
	r.m.Attention, r.m.Checkpointing = o.Attention, o.Checkpointing
	if r.m.Quant, err = quantization(o, cfg); err != nil {
		return nil, err
	}
	r.res.Quantization, r.res.Connector = string(r.m.Quant.Type), o.Connector
	if o.CompileOnly {
		if slices.Contains(o.Sections, "forward") || slices.Contains(o.Sections, "generate") {
			return nil, fmt.Errorf("--compile-only measures the train section only (--sections train)")
		}
		declareForPlan(r.m, o.fullyTrained())
	} else if err := RandomWeights(r.m, be, 0.02, o.Seed); err != nil {
		return nil, err
	}
	r.res.Setup = &Setup{InitS: round(time.Since(start).Seconds(), 3), HostPeakMiB: PeakRSSMiB()}
	r.logf("weights ready in %.2fs (host peak %.0f MiB)", r.res.Setup.InitS, r.res.Setup.HostPeakMiB)
	r.progress()

	for _, s := range o.Sections {
		if s != "forward" && s != "train" && s != "generate" {
			return nil, fmt.Errorf("unknown section %q (forward, train, generate)", s)
		}
	}
	// The train step attaches LoRA to the model, so it runs last whatever the order given.
	for _, s := range []string{"forward", "generate", "train"} {
		if !slices.Contains(o.Sections, s) {
			continue
		}
		ResetPeakRSS()
		r.gpuMem.Reset()
		switch s {
		case "forward":
			r.res.Forward = r.forward()
		case "train":
			r.res.Train = r.train()
		case "generate":
			r.res.Generate = r.generate()
		}
		r.progress()
	}
	return r.res, nil
}

func (r *runner) progress() {
	if r.o.OnSection != nil {
		r.o.OnSection(r.res)
	}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "bench: "+format+"\n", args...)
}

func dtypeName(s string) string {
	if dt, err := model.ParseDType(s); err == nil && dt.String() == "BFloat16" {
		return "bfloat16"
	}
	return "float32"
}

// versions names the Go toolchain and the GoMLX modules this binary was built with.
func versions() map[string]string {
	v := map[string]string{"go": runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/gomlx/gomlx" || d.Path == "github.com/gomlx/go-xla" {
				v[d.Path[strings.LastIndexByte(d.Path, '/')+1:]] = d.Version
			}
		}
	}
	return v
}

// timings summarises repeated durations.
func timings(ds []time.Duration) (median, minimum time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2], s[0]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, s[0]
}

func ms(d time.Duration) float64 { return round(float64(d)/1e6, 3) }
