package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/idefics2/idefics2/internal/xlastats"
)

// Result is one bench run (one implementation, one configuration, one shape). scripts/bench_hf.py
// writes the same fields.
type Result struct {
	Impl              string            `json:"impl"` // "ours" or "hf"
	Size              string            `json:"size"`
	Config            string            `json:"config"`
	DType             string            `json:"dtype"`
	Params            int64             `json:"params"`
	ParamsByComponent map[string]int64  `json:"params_by_component,omitempty"`
	Hardware          Hardware          `json:"hardware"`
	Versions          map[string]string `json:"versions,omitempty"`
	Shape             Shape             `json:"shape"`
	Peak              PeakFLOPS         `json:"peak"`
	FLOPs             FLOPs             `json:"forward_flops"`
	TrainFLOPs        float64           `json:"train_step_flops"`
	Quantization      string            `json:"quantization,omitempty"` // 4-bit frozen Linears: nf4 or fp4
	Connector         string            `json:"connector,omitempty"`    // train step: lora or full
	LoRARank          int               `json:"lora_rank"`
	Setup             *Setup            `json:"setup,omitempty"`
	Forward           *Section          `json:"forward,omitempty"`
	Train             *Section          `json:"train,omitempty"`
	Generate          *GenSection       `json:"generate,omitempty"`
	Notes             []string          `json:"notes,omitempty"`
}

// Setup is building the model: random weights into backend memory.
type Setup struct {
	InitS       float64 `json:"init_s"`
	HostPeakMiB float64 `json:"host_peak_mib"`
}

// Section is a repeated graph execution (forward pass, train step).
type Section struct {
	Skipped       string  `json:"skipped,omitempty"`
	Iters         int     `json:"iters,omitempty"`
	CompileCount  int     `json:"compile_count"`
	CompileS      float64 `json:"compile_s"`     // building + compiling the graph(s)
	FirstS        float64 `json:"first_call_s"`  // the first call after compiling (weights transfer, warm-up)
	MedianMS      float64 `json:"median_ms"`     // steady state
	MinMS         float64 `json:"min_ms"`        //
	ModelGFLOP    float64 `json:"model_gflop"`   // model FLOPs of one call
	TFLOPS        float64 `json:"model_tflops"`  // model FLOPs / median time
	MFU           float64 `json:"mfu,omitempty"` // TFLOPS / peak; 0 when no peak is known
	SamplesPerS   float64 `json:"samples_per_s"`
	TokensPerS    float64 `json:"tokens_per_s"`
	HostPeakMiB   float64 `json:"host_peak_mib"`
	DevicePeakMiB float64 `json:"device_peak_mib,omitempty"`
	Loss          float64 `json:"loss,omitempty"` // sanity: the last call's loss
	// XLA's compiled memory plan (train section; see train.MemoryPlan): the step's device peak,
	// the variables resident across it, and each graph's arguments, outputs, temporaries, aliases.
	DevicePeakBytes int64            `json:"device_peak_bytes,omitempty"`
	ResidentBytes   int64            `json:"resident_bytes,omitempty"`
	PeakGraph       string           `json:"peak_graph,omitempty"`
	Graphs          []xlastats.Graph `json:"graphs,omitempty"`
}

// GenSection is greedy generation of NewTokens tokens per row (eos disabled so every call
// produces exactly that many). PrefillMS is the median time of a generate call with
// max_new_tokens=1 (vision, connector, prompt, first token); DecodeTokS is
// B·(NewTokens−1)/(t(NewTokens) − t(1)) with median times; TwentyS is the wall time of 20
// generate calls of NewTokens tokens each (the model card's measurement protocol on our shapes).
type GenSection struct {
	Skipped       string  `json:"skipped,omitempty"`
	NewTokens     int     `json:"new_tokens"`
	Iters         int     `json:"iters,omitempty"`
	PrefillMS     float64 `json:"prefill_ms"`
	GenerateMS    float64 `json:"generate_ms"` // median time of one full generate call
	DecodeTokS    float64 `json:"decode_tokens_per_s"`
	TwentyS       float64 `json:"twenty_generations_s"`
	CompileCount  int     `json:"compile_count"`
	CompileS      float64 `json:"compile_s"`
	HostPeakMiB   float64 `json:"host_peak_mib"`
	DevicePeakMiB float64 `json:"device_peak_mib,omitempty"`
}

// WriteJSON writes r to path (indented).
func (r *Result) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReadResult reads a result JSON (ours or HF's).
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// metric is one row of the tables: how to read it from a Result and which direction is better.
type metric struct {
	name   string
	get    func(*Result) (float64, bool)
	format string
	lower  bool // lower is better
}

func sec(s *Section, f func(*Section) float64) (float64, bool) {
	if s == nil || s.Skipped != "" {
		return 0, false
	}
	v := f(s)
	return v, v != 0
}

func gen(s *GenSection, f func(*GenSection) float64) (float64, bool) {
	if s == nil || s.Skipped != "" {
		return 0, false
	}
	v := f(s)
	return v, v != 0
}

var metrics = []metric{
	{"setup: init weights (s)", func(r *Result) (float64, bool) {
		if r.Setup == nil {
			return 0, false
		}
		return r.Setup.InitS, true
	}, "%.2f", true},
	{"forward: median (ms)", func(r *Result) (float64, bool) { return sec(r.Forward, func(s *Section) float64 { return s.MedianMS }) }, "%.1f", true},
	{"forward: model TFLOP/s", func(r *Result) (float64, bool) { return sec(r.Forward, func(s *Section) float64 { return s.TFLOPS }) }, "%.4g", false},
	{"forward: MFU", func(r *Result) (float64, bool) { return sec(r.Forward, func(s *Section) float64 { return s.MFU }) }, "%.1f%%", false},
	{"forward: compiles", func(r *Result) (float64, bool) {
		return sec(r.Forward, func(s *Section) float64 { return float64(s.CompileCount) })
	}, "%.0f", true},
	{"forward: compile (s)", func(r *Result) (float64, bool) { return sec(r.Forward, func(s *Section) float64 { return s.CompileS }) }, "%.3g", true},
	{"forward: host peak (MiB)", func(r *Result) (float64, bool) {
		return sec(r.Forward, func(s *Section) float64 { return s.HostPeakMiB })
	}, "%.0f", true},
	{"forward: device peak (MiB)", func(r *Result) (float64, bool) {
		return sec(r.Forward, func(s *Section) float64 { return s.DevicePeakMiB })
	}, "%.0f", true},
	{"train step: median (ms)", func(r *Result) (float64, bool) { return sec(r.Train, func(s *Section) float64 { return s.MedianMS }) }, "%.1f", true},
	{"train: samples/s", func(r *Result) (float64, bool) {
		return sec(r.Train, func(s *Section) float64 { return s.SamplesPerS })
	}, "%.3g", false},
	{"train: tokens/s", func(r *Result) (float64, bool) { return sec(r.Train, func(s *Section) float64 { return s.TokensPerS }) }, "%.4g", false},
	{"train: model TFLOP/s", func(r *Result) (float64, bool) { return sec(r.Train, func(s *Section) float64 { return s.TFLOPS }) }, "%.4g", false},
	{"train: MFU", func(r *Result) (float64, bool) { return sec(r.Train, func(s *Section) float64 { return s.MFU }) }, "%.1f%%", false},
	{"train: compiles", func(r *Result) (float64, bool) {
		return sec(r.Train, func(s *Section) float64 { return float64(s.CompileCount) })
	}, "%.0f", true},
	{"train: compile (s)", func(r *Result) (float64, bool) { return sec(r.Train, func(s *Section) float64 { return s.CompileS }) }, "%.3g", true},
	{"train: host peak (MiB)", func(r *Result) (float64, bool) {
		return sec(r.Train, func(s *Section) float64 { return s.HostPeakMiB })
	}, "%.0f", true},
	{"train: device peak (MiB)", func(r *Result) (float64, bool) {
		return sec(r.Train, func(s *Section) float64 { return s.DevicePeakMiB })
	}, "%.0f", true},
	{"generate: prefill (ms)", func(r *Result) (float64, bool) {
		return gen(r.Generate, func(s *GenSection) float64 { return s.PrefillMS })
	}, "%.1f", true},
	{"generate: decode tokens/s", func(r *Result) (float64, bool) {
		return gen(r.Generate, func(s *GenSection) float64 { return s.DecodeTokS })
	}, "%.4g", false},
	{"generate: 20 generations (s)", func(r *Result) (float64, bool) {
		return gen(r.Generate, func(s *GenSection) float64 { return s.TwentyS })
	}, "%.2f", true},
	{"generate: compiles", func(r *Result) (float64, bool) {
		return gen(r.Generate, func(s *GenSection) float64 { return float64(s.CompileCount) })
	}, "%.0f", true},
	{"generate: compile (s)", func(r *Result) (float64, bool) {
		return gen(r.Generate, func(s *GenSection) float64 { return s.CompileS })
	}, "%.2f", true},
	{"generate: host peak (MiB)", func(r *Result) (float64, bool) {
		return gen(r.Generate, func(s *GenSection) float64 { return s.HostPeakMiB })
	}, "%.0f", true},
	{"generate: device peak (MiB)", func(r *Result) (float64, bool) {
		return gen(r.Generate, func(s *GenSection) float64 { return s.DevicePeakMiB })
	}, "%.0f", true},
}

func fmtMetric(m metric, v float64) string {
	if strings.Contains(m.format, "%%") {
		return fmt.Sprintf(m.format, 100*v)
	}
	return fmt.Sprintf(m.format, v)
}

// Header describes the run: hardware, backend, model, shape and the peak MFU divides by.
func (r *Result) Header() string {
	h := r.Hardware
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%s, %.3g M params), batch %d × %d tokens, 1 image %d² (%d patches), %s\n",
		r.Impl, r.Size, r.Config, float64(r.Params)/1e6, r.Shape.Batch, r.Shape.Seq, r.Shape.ImageSize, r.Shape.Patches, r.DType)
	fmt.Fprintf(&b, "  hardware: %s, %d cores, %.0f GiB", h.CPU, h.Cores, h.MemGiB)
	if h.GPU != "" {
		fmt.Fprintf(&b, "; GPU %s (%.0f GiB)", h.GPU, h.GPUMemGiB)
	}
	fmt.Fprintf(&b, "\n  backend: %s\n", h.Backend)
	if r.Peak.TFLOPS > 0 {
		fmt.Fprintf(&b, "  MFU peak: %.4g TFLOP/s (%s)\n", r.Peak.TFLOPS, r.Peak.Source)
	} else {
		fmt.Fprintf(&b, "  MFU peak: none known for this hardware (pass -peak-tflops); MFU not reported\n")
	}
	return b.String()
}

// PrintTable writes r's measurements.
func (r *Result) PrintTable(w io.Writer) {
	fmt.Fprint(w, r.Header())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tmetric\tvalue\t\n")
	for _, m := range metrics {
		if v, ok := m.get(r); ok {
			fmt.Fprintf(tw, "\t%s\t%s\t\n", m.name, fmtMetric(m, v))
		}
	}
	for _, s := range []struct {
		name string
		why  string
	}{{"train", skipped(r.Train)}, {"generate", skippedGen(r.Generate)}} {
		if s.why != "" {
			fmt.Fprintf(tw, "\t%s\tskipped: %s\t\n", s.name, s.why)
		}
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

func skipped(s *Section) string {
	if s != nil {
		return s.Skipped
	}
	return ""
}

func skippedGen(s *GenSection) string {
	if s != nil {
		return s.Skipped
	}
	return ""
}

// Compare writes the side-by-side table of ours against HF: each metric both have, and
// ours/HF. For times lower is better (a ratio below 1 means we are faster); for throughputs
// higher is better.
func Compare(w io.Writer, ours, hf *Result) {
	DeriveRates(hf, ours)
	fmt.Fprint(w, ours.Header())
	fmt.Fprint(w, hf.Header())
	if ours.Config != hf.Config || ours.Shape != hf.Shape || ours.DType != hf.DType {
		fmt.Fprintf(w, "  WARNING: the runs differ (config %s vs %s, shape %+v vs %+v, dtype %s vs %s)\n",
			ours.Config, hf.Config, ours.Shape, hf.Shape, ours.DType, hf.DType)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tmetric\tours\tHF\tours/HF\tbetter\t\n")
	for _, m := range metrics {
		a, okA := m.get(ours)
		b, okB := m.get(hf)
		if !okA && !okB {
			continue
		}
		sa, sb, ratio := "-", "-", "-"
		if okA {
			sa = fmtMetric(m, a)
		}
		if okB {
			sb = fmtMetric(m, b)
		}
		if okA && okB && b != 0 && !math.IsInf(a/b, 0) {
			ratio = fmt.Sprintf("%.3g", a/b)
		}
		dir := "higher"
		if m.lower {
			dir = "lower"
		}
		fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s\t\n", m.name, sa, sb, ratio, dir)
	}
	tw.Flush()
	for _, r := range []*Result{ours, hf} {
		for _, s := range []struct{ name, why string }{{"train", skipped(r.Train)}, {"generate", skippedGen(r.Generate)}} {
			if s.why != "" {
				fmt.Fprintf(w, "  %s %s skipped: %s\n", r.Impl, s.name, s.why)
			}
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s note: %s\n", r.Impl, n)
		}
	}
}

// DeriveRates fills in model TFLOP/s and MFU of a result that has only times (scripts/bench_hf.py
// writes none) from the FLOP counts of ref, a result of this package on the same configuration
// and shape, so that both columns of Compare use one FLOP definition.
func DeriveRates(r, ref *Result) {
	if r.Shape != ref.Shape || r.Config != ref.Config {
		return
	}
	if r.TrainFLOPs == 0 {
		r.FLOPs, r.TrainFLOPs = ref.FLOPs, ref.TrainFLOPs
	}
	fill := func(s *Section, flops float64) {
		if s == nil || s.Skipped != "" || s.MedianMS <= 0 || s.TFLOPS != 0 {
			return
		}
		s.ModelGFLOP = round(flops/1e9, 3)
		s.TFLOPS = flops / (s.MedianMS / 1e3) / 1e12
		if r.Peak.TFLOPS > 0 {
			s.MFU = s.TFLOPS / r.Peak.TFLOPS
		}
	}
	fill(r.Forward, r.FLOPs.Total())
	fill(r.Train, r.TrainFLOPs)
}
