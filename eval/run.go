package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Request is one generation the runner asks of a Predictor.
type Request struct {
	Prompt       string   // full prompt with literal <image> placeholders (the processor adds BOS)
	Images       [][]byte // encoded images, one per placeholder
	Splitting    *bool    // image splitting; nil: the processor's configuration
	MaxNewTokens int
}

// Output is a Predictor's answer to one Request.
type Output struct {
	Text      string // the new tokens decoded with special tokens skipped
	NewTokens int    // tokens generated (eos included)
	Stopped   bool   // it ended on an eos token (false: max_new_tokens)
	Err       error  // this request failed (e.g. an image that does not decode)
}

// Predictor generates answers, a batch of requests at a time (left padded together).
type Predictor interface {
	Predict(ctx context.Context, reqs []Request) ([]Output, error)
}

// Config selects what to evaluate and how; every field has a yaml/json key, so a run is
// described by a config file (cmd/idefics2-eval) or set by a trainer.
type Config struct {
	Task   string `json:"task" yaml:"task" mapstructure:"task" check:"oneof=|docvqa|textvqa"`             // docvqa | textvqa
	Preset string `json:"preset" yaml:"preset" mapstructure:"preset" check:"oneof=|lmms-eval|vlmevalkit"` // lmms-eval | vlmevalkit
	Data   string `json:"data" yaml:"data" mapstructure:"data"`                                           // local lmms-lab dataset root
	Split  string `json:"split" yaml:"split" mapstructure:"split"`                                        // default validation
	// Limit evaluates only the first Limit samples (0: all), e.g. a quick check during training.
	Limit     int `json:"limit" yaml:"limit" mapstructure:"limit" check:"min=0"`
	BatchSize int `json:"batch_size" yaml:"batch_size" mapstructure:"batch_size" check:"min=0"` // default 1, as both harnesses
	// MaxNewTokens overrides the preset's generation length (0: the preset's).
	MaxNewTokens int `json:"max_new_tokens" yaml:"max_new_tokens" mapstructure:"max_new_tokens" check:"min=0"`
	// Splitting overrides the preset's image splitting: "on", "off" or "" (the preset's).
	Splitting string `json:"splitting" yaml:"splitting" mapstructure:"splitting" check:"oneof=|on|off"`
	// OutDir receives predictions.jsonl and report.json ("" writes nothing).
	OutDir string `json:"out_dir" yaml:"out_dir" mapstructure:"out_dir"`
	// Progress writes a progress line to stderr.
	Progress bool `json:"progress" yaml:"progress" mapstructure:"progress"`
}

// Resolve applies the defaults and returns the preset the config selects, with its overrides.
func (c *Config) Resolve() (*Preset, error) {
	if c.Split == "" {
		c.Split = "validation"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1
	}
	task, err := ParseTask(c.Task)
	if err != nil {
		return nil, err
	}
	p, err := NewPreset(c.Preset, task)
	if err != nil {
		return nil, err
	}
	if c.MaxNewTokens > 0 {
		p.MaxNewTokens = c.MaxNewTokens
	}
	switch c.Splitting {
	case "":
	case "on", "true":
		on := true
		p.Splitting = &on
	case "off", "false":
		off := false
		p.Splitting = &off
	default:
		return nil, fmt.Errorf("eval: splitting %q: want on, off or empty", c.Splitting)
	}
	return p, nil
}

// Prediction is one line of predictions.jsonl.
type Prediction struct {
	ID         string   `json:"id"`
	Question   string   `json:"question"`
	Answers    []string `json:"answers"`
	Prompt     string   `json:"prompt"`
	Generated  string   `json:"generated"`  // decoded new tokens
	Prediction string   `json:"prediction"` // what was scored
	Score      float64  `json:"score"`
	NewTokens  int      `json:"new_tokens"`
	Stopped    bool     `json:"stopped_on_eos"`
	Error      string   `json:"error,omitempty"`
}

// Report is report.json: the dataset score and how it was obtained.
type Report struct {
	Task         string  `json:"task"`
	Preset       string  `json:"preset"`
	Split        string  `json:"split"`
	Metric       string  `json:"metric"`
	Samples      int     `json:"samples"`
	Errors       int     `json:"errors"` // scored 0
	Score        float64 `json:"score"`  // mean per-question score in [0, 1]
	Reported     float64 `json:"reported"`
	ReportedAs   string  `json:"reported_as"` // "fraction" (lmms-eval) or "percent" (VLMEvalKit)
	MaxNewTokens int     `json:"max_new_tokens"`
	Splitting    string  `json:"image_splitting"`
	Truncated    int     `json:"hit_max_new_tokens"` // answers that never emitted eos
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"samples_per_second"`
}

// Run evaluates the samples of src (the first cfg.Limit) with pred under the preset cfg
// selects, writes predictions.jsonl and report.json to cfg.OutDir, and returns the report.
func Run(ctx context.Context, cfg Config, src Source, pred Predictor) (*Report, error) {
	p, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	var out *os.File
	if cfg.OutDir != "" {
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, err
		}
		if out, err = os.Create(filepath.Join(cfg.OutDir, "predictions.jsonl")); err != nil {
			return nil, err
		}
		defer out.Close()
	}
	rep := &Report{Task: string(p.Task), Preset: p.Name, Split: cfg.Split, Metric: p.Metric, MaxNewTokens: p.MaxNewTokens,
		Splitting: "processor default", ReportedAs: "fraction"}
	if p.Percent {
		rep.ReportedAs = "percent"
	}
	if p.Splitting != nil {
		rep.Splitting = map[bool]string{true: "on", false: "off"}[*p.Splitting]
	}
	bar := newProgress(cfg.Progress, cfg.Limit, string(p.Task)+" "+p.Name)
	start := time.Now()
	sum := 0.0
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	done := false
	for !done {
		var batch []Sample
		for len(batch) < cfg.BatchSize && (cfg.Limit <= 0 || rep.Samples+len(batch) < cfg.Limit) {
			s, err := src.Next(ctx)
			if errors.Is(err, io.EOF) {
				done = true
				break
			}
			if err != nil {
				return nil, err
			}
			batch = append(batch, s)
		}
		if cfg.Limit > 0 && rep.Samples+len(batch) >= cfg.Limit {
			done = true
		}
		if len(batch) == 0 {
			break
		}
		reqs := make([]Request, len(batch))
		for i, s := range batch {
			reqs[i] = Request{Prompt: p.Prompt(s.Question, len(s.Images)), Images: s.Images, Splitting: p.Splitting, MaxNewTokens: p.MaxNewTokens}
		}
		outs, err := pred.Predict(ctx, reqs)
		if err != nil {
			return nil, err
		}
		for i, s := range batch {
			o := outs[i]
			pr := Prediction{ID: s.ID, Question: s.Question, Answers: s.Answers, Prompt: reqs[i].Prompt,
				Generated: o.Text, NewTokens: o.NewTokens, Stopped: o.Stopped}
			if o.Err != nil {
				pr.Error = o.Err.Error()
				rep.Errors++
			} else {
				pr.Prediction = p.Answer(o.Text)
				pr.Score = p.Score(pr.Prediction, s.Answers)
				if !o.Stopped {
					rep.Truncated++
				}
			}
			sum += pr.Score
			rep.Samples++
			if out != nil {
				if err := enc.Encode(pr); err != nil {
					return nil, err
				}
			}
		}
		bar.update(rep.Samples, sum/float64(rep.Samples), p.Metric)
	}
	bar.finish()
	rep.Seconds = time.Since(start).Seconds()
	if rep.Samples > 0 {
		rep.Score = sum / float64(rep.Samples)
		rep.PerSecond = float64(rep.Samples) / rep.Seconds
	}
	rep.Reported = rep.Score
	if p.Percent {
		rep.Reported = 100 * rep.Score
	}
	if cfg.OutDir != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(cfg.OutDir, "report.json"), append(data, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// progress is a one-line progress display on stderr.
type progress struct {
	on    bool
	total int
	label string
	start time.Time
	w     io.Writer
}

func newProgress(on bool, total int, label string) *progress {
	return &progress{on: on, total: total, label: label, start: time.Now(), w: os.Stderr}
}

func (p *progress) update(n int, score float64, metric string) {
	if !p.on {
		return
	}
	el := time.Since(p.start).Seconds()
	rate := float64(n) / el
	line := fmt.Sprintf("\r%s: %d", p.label, n)
	if p.total > 0 {
		eta := time.Duration(float64(p.total-n)/rate) * time.Second
		line += fmt.Sprintf("/%d (%.0f%%, eta %s)", p.total, 100*float64(n)/float64(p.total), eta.Round(time.Second))
	}
	line += fmt.Sprintf("  %.2f samples/s  %s %.4f ", rate, metric, score)
	fmt.Fprint(p.w, line)
}

func (p *progress) finish() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}
