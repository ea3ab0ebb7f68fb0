package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Metrics is one line of metrics.jsonl.
type Metrics struct {
	Step          int      `json:"step"`
	Loss          float64  `json:"loss"`
	EvalLoss      float64  `json:"eval_loss,omitempty"`
	EvalScore     *float64 `json:"eval_score,omitempty"` // the generate_eval metric (ANLS or VQA accuracy), when run
	LR            float64  `json:"lr"`
	GradNorm      float64  `json:"grad_norm"`
	TokensPerSec  float64  `json:"tokens_per_sec"`
	SamplesPerSec float64  `json:"samples_per_sec"`
	StepSeconds   float64  `json:"step_seconds"`
	PaddingWaste  float64  `json:"padding_waste"` // share of token positions that are padding, so far
	PixelWaste    float64  `json:"pixel_waste"`
	Compiles      int      `json:"compiled_shapes"`
	Samples       int64    `json:"samples"`
}

type metricsFile struct {
	f *os.File
	w *bufio.Writer
}

// openMetrics opens metrics.jsonl for appending, dropping lines past fromStep (a resumed run
// rewrites the steps after its checkpoint, so the file never holds a step twice).
func openMetrics(path string, fromStep int) (*metricsFile, error) {
	var keep []string
	if b, err := os.ReadFile(path); err == nil && fromStep > 0 {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m Metrics
			if json.Unmarshal([]byte(line), &m) == nil && m.Step <= fromStep {
				keep = append(keep, line)
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	mf := &metricsFile{f: f, w: bufio.NewWriter(f)}
	for _, l := range keep {
		fmt.Fprintln(mf.w, l)
	}
	return mf, mf.w.Flush()
}

func (m *metricsFile) Write(rec Metrics) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m.w.Write(append(b, '\n'))
	return m.w.Flush()
}

func (m *metricsFile) Close() error { return m.f.Close() }

// progress is a one-line progress bar with the loss and an ETA.
type progress struct {
	w       io.Writer
	total   int
	on      bool
	start   time.Time
	started int
}

func newProgress(w io.Writer, total int, on bool) *progress {
	return &progress{w: w, total: total, on: on, start: time.Now(), started: -1}
}

func (p *progress) Update(step int, loss float64) {
	if !p.on {
		return
	}
	if p.started < 0 {
		p.started, p.start = step-1, time.Now()
	}
	done := step - p.started
	per := time.Since(p.start) / time.Duration(max(done, 1))
	eta := per * time.Duration(p.total-step)
	width := 30
	filled := width * step / max(p.total, 1)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d loss %.4f  %s/step  ETA %s   ", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		step, p.total, loss, per.Round(time.Millisecond), eta.Round(time.Second))
}

func (p *progress) Done() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}
