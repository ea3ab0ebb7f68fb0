package bench

import (
	"bytes"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/model"
)

func TestConfigs(t *testing.T) {
	c8, _, err := LoadConfig("8b")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c8, model.Idefics2_8B()) {
		t.Errorf("bench/configs/8b.json resolves to\n%+v\nwant model.Idefics2_8B()\n%+v", c8, model.Idefics2_8B())
	}
	if _, n := c8.ParamCounts(); n != 8_402_768_112 {
		t.Errorf("8b: %d params", n)
	}
	small, _, err := LoadConfig("small")
	if err != nil {
		t.Fatal(err)
	}
	if _, n := small.ParamCounts(); n < 90e6 || n > 110e6 {
		t.Errorf("small: %d params, want about 100M", n)
	}
	if _, _, err := LoadConfig("tiny"); err != nil {
		t.Errorf("tiny (%s): %v", TinyConfigPath, err)
	}
	if _, _, err := LoadConfig("huge"); err == nil {
		t.Errorf("an unknown size must be an error")
	}
}

// The FLOP counts reproduce peers.md §3.4: a 980×980 image costs ≈7.0 TFLOP in the vision tower
// (4.0 matmuls + 3.0 attention), the connector ≈1.1 TFLOP, the LLM ≈14.2 GFLOP per token.
func TestForwardFLOPs8B(t *testing.T) {
	c := model.Idefics2_8B()
	f := ForwardFLOPs(c, 1, 130, 1, 4900)
	near := func(name string, got, want, tol float64) {
		if math.Abs(got-want) > tol*want {
			t.Errorf("%s = %.4g, want ≈ %.4g", name, got, want)
		}
	}
	near("vision matmuls", f.Vision, 4.0e12, 0.05)
	near("vision attention", f.VisionAttn, 3.0e12, 0.05)
	near("connector", f.Projection+f.Perceiver+f.ConnAttn, 1.1e12, 0.15)
	near("LLM per token", (f.Text+f.LMHead)/130, 14.2e9, 0.03)
	// LoRA + connector training: vision ×1, connector ×3, LLM ×2 (+ attention ×3, LoRA).
	train := TrainFLOPs(f, LoRAParams(c, 8), 130)
	near("train step", train, 14e12, 0.1)
	if lp := LoRAParams(c, 8); lp < 20e6 || lp > 22e6 {
		t.Errorf("LoRA r=8 on the decoder: %.4g params, want ≈ 21M (peers.md §3.6)", lp)
	}
}

// The whole bench on the tiny fixture config with the pure Go backend: every section runs and
// the JSON round-trips into the comparison table.
func TestRunTiny(t *testing.T) {
	o := DefaultOptions()
	o.Backend, o.Iters, o.NewTokens, o.Log = "go", 1, 3, io.Discard
	var progress int
	o.OnSection = func(*Result) { progress++ }
	r, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if progress != 4 {
		t.Errorf("OnSection called %d times, want 4 (setup + 3 sections)", progress)
	}
	for name, why := range map[string]string{"forward": skipped(r.Forward), "train": skipped(r.Train), "generate": skippedGen(r.Generate)} {
		if why != "" {
			t.Errorf("%s skipped: %s", name, why)
		}
	}
	if r.Forward.MedianMS <= 0 || r.Forward.CompileCount != 1 || r.Forward.ModelGFLOP <= 0 {
		t.Errorf("forward: %+v", r.Forward)
	}
	if math.Abs(r.Forward.Loss-math.Log(100)) > 0.1 {
		t.Errorf("forward loss %.4f: random weights over a 100-token vocabulary should give ≈ ln 100", r.Forward.Loss)
	}
	if r.Train.MedianMS <= 0 || r.Train.CompileCount < 2 {
		t.Errorf("train: %+v", r.Train)
	}
	if r.Generate.PrefillMS <= 0 || r.Generate.TwentyS <= 0 || r.Generate.CompileCount < 2 {
		t.Errorf("generate: %+v", r.Generate)
	}
	path := filepath.Join(t.TempDir(), "ours.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResult(path)
	if err != nil {
		t.Fatal(err)
	}
	hf := *back
	hf.Impl = "hf"
	hf.Forward = &Section{MedianMS: 2 * back.Forward.MedianMS}
	var buf bytes.Buffer
	Compare(&buf, back, &hf)
	out := buf.String()
	for _, want := range []string{"forward: median (ms)", "ours/HF", "0.5", "train: tokens/s", "generate: prefill (ms)"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison table lacks %q:\n%s", want, out)
		}
	}
	if hf.Forward.TFLOPS <= 0 {
		t.Errorf("Compare did not derive HF's model TFLOP/s from our FLOP count")
	}
}
