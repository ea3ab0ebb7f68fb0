package train_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
	"github.com/idefics2/idefics2/train"
)

// dpSteps is how many optimizer steps the data-parallel runs compare.
const dpSteps = 10

// Data-parallel training is the single-device run split over a mesh: on XLA's CPU plugin with
// 2 devices (and 4, and 4 with the optimizer state sharded, where the backend has them), 10
// steps of the tiny config at the same global batch (4 rows and 4 images: 2 or 1 of each per
// device) give the same loss per step as 1 device within 1e-6 relative (measured ≤ 4.9e-7).
// Only the order of float32 sums differs (each device sums its rows, then XLA adds the devices'
// partial gradients); LoRA dropout draws the same masks, or the losses would differ by percents
// (a batch of 2 rows accumulated twice, which draws other masks, differs by 2–30 %). The
// gradient norm agrees within 1e-6 for steps 1–5 (measured 7.8e-7 on 2 devices, 3.4e-7 on 4,
// 1.0e-6 on 4 with the optimizer sharded: 2e-6 leaves room for another CPU's code). AdamW's
// first steps move each weight by about ±lr whatever its gradient's size, so the rounding of
// near-zero gradients becomes full-size differences in a few weights and the runs drift apart
// slowly: from step 6 (a loss spike) the norm differs by up to 4.3e-6, so 1e-5 there, and the
// final adapter (LoRA and connector after 10 steps at lr 1e-2) by 2.0e-5–3.6e-5 of a tensor's
// largest entry: 1e-4. TestDataParallelStepParity checks one step without the drift.
//
// The pure Go backend has one device: the test is skipped there (`make test-xla-cpu` runs it).
func TestDataParallelParity(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	if be.NumDevices() < 2 {
		t.Skipf("backend %s has %d device: data-parallel needs several (XLA's CPU plugin has 4: make test-xla-cpu)", be.Name(), be.NumDevices())
	}
	tmp := t.TempDir()
	run := func(name string, sets ...string) string {
		sets = append([]string{"train.max_steps=" + itoa(dpSteps), "train.eval_every=0", "train.save_every=0", "train.output_dir=" + filepath.Join(tmp, name)}, sets...)
		cfg := tinyConfig(t, tmp, sets...)
		if err := os.MkdirAll(cfg.Train.OutputDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := train.Run(context.Background(), cfg, false, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return cfg.Train.OutputDir
	}
	ref := run("one")
	want := readMetrics(t, ref)
	cases := []struct {
		name string
		sets []string
		min  int
	}{
		{"two", []string{"train.devices=2"}, 2},
		{"four", []string{"train.devices=4"}, 4},
		{"four-sharded", []string{"train.devices=4", "train.shard_optimizer=true"}, 4},
	}
	for _, c := range cases {
		if be.NumDevices() < c.min {
			t.Logf("%s: backend has %d devices, skipped", c.name, be.NumDevices())
			continue
		}
		if testing.Short() && c.min > 2 {
			t.Logf("%s: skipped with -short (CI runs the 2-device case)", c.name)
			continue
		}
		out := run(c.name, c.sets...)
		compareCurves(t, c.name, want, readMetrics(t, out), 0)
		compareAdapters(t, c.name, ref, out, 1e-4)
	}
}

// A run checkpointed on 2 devices resumes on 1 and continues the 1-device curve: the checkpoint
// is the single-device one (whole tensors), and the data cursor and dropout RNG are global.
func TestDataParallelResumeParity(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	if be.NumDevices() < 2 {
		t.Skipf("backend %s has %d device: data-parallel needs several (make test-xla-cpu)", be.Name(), be.NumDevices())
	}
	tmp := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := []string{"train.max_steps=" + itoa(dpSteps), "train.eval_every=0", "train.keep_last=0", "train.save_every=5"}
	for _, d := range []string{"one", "two"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	one := tinyConfig(t, tmp, append(base, "train.output_dir="+filepath.Join(tmp, "one"))...)
	if _, err := train.Run(context.Background(), one, false, log); err != nil {
		t.Fatal(err)
	}
	two := tinyConfig(t, tmp, append(base, "train.output_dir="+filepath.Join(tmp, "two"), "train.devices=2")...)
	if _, err := train.Run(context.Background(), two, false, log); err != nil {
		t.Fatal(err)
	}
	// Keep the step-5 checkpoint only, then continue on one device.
	if err := os.RemoveAll(filepath.Join(two.Train.OutputDir, "checkpoint-0000010")); err != nil {
		t.Fatal(err)
	}
	resumed := tinyConfig(t, tmp, append(base, "train.output_dir="+filepath.Join(tmp, "two"), "train.devices=1")...)
	if _, err := train.Run(context.Background(), resumed, true, log); err != nil {
		t.Fatal(err)
	}
	want, got := readMetrics(t, one.Train.OutputDir), readMetrics(t, resumed.Train.OutputDir)
	compareCurves(t, "2 devices to step 5, then 1", want, got, 0)
	compareAdapters(t, "2 devices to step 5, then 1", one.Train.OutputDir, resumed.Train.OutputDir, 1e-4)
}

// compareCurves checks the loss per step within 1e-6 relative, from step from, and the
// gradient norm within 2e-6 for steps 1–5 and 1e-5 after (see TestDataParallelParity).
func compareCurves(t *testing.T, name string, want, got []train.Metrics, from int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d steps, the 1-device run %d", name, len(got), len(want))
	}
	var worstLoss, worstNorm5, worstNorm float64 // loss; grad norm of steps 1–5; all steps
	for i := from; i < len(want); i++ {
		for _, c := range []struct {
			what      string
			got, want float64
		}{{"loss", got[i].Loss, want[i].Loss}, {"grad_norm", got[i].GradNorm, want[i].GradNorm}} {
			rel := math.Abs(c.got-c.want) / math.Abs(c.want)
			tol := 1e-6
			switch {
			case c.what == "loss":
				worstLoss = math.Max(worstLoss, rel)
			case i < 5:
				worstNorm5 = math.Max(worstNorm5, rel)
				tol = 2e-6
			default:
				tol = 1e-5
			}
			if c.what == "grad_norm" {
				worstNorm = math.Max(worstNorm, rel)
			}
			if !(rel <= tol) {
				t.Errorf("%s: step %d %s %.9g, 1 device %.9g (rel %.2g > %g)", name, i+1, c.what, c.got, c.want, rel, tol)
			}
		}
	}
	t.Logf("%s: %d steps, worst relative difference from 1 device: loss %.2g, grad_norm %.2g (steps 1–5) %.2g (all); loss %.6g → %.6g",
		name, len(got), worstLoss, worstNorm5, worstNorm, got[0].Loss, got[len(got)-1].Loss)
}

// compareAdapters checks the exported adapters' tensors within tol of each tensor's largest entry.
func compareAdapters(t *testing.T, name, wantDir, gotDir string, tol float64) {
	t.Helper()
	want, got := readAdapter(t, wantDir), readAdapter(t, gotDir)
	worst, worstName := 0.0, ""
	for k, w := range want {
		g, ok := got[k]
		if !ok || len(g) != len(w) {
			t.Fatalf("%s: adapter tensor %s missing or reshaped", name, k)
		}
		scale := 0.0
		for _, x := range w {
			scale = math.Max(scale, math.Abs(float64(x)))
		}
		for i := range w {
			if d := math.Abs(float64(g[i])-float64(w[i])) / math.Max(scale, 1e-12); !(d <= worst) {
				worst, worstName = d, k
			}
		}
	}
	t.Logf("%s: adapter (%d tensors) worst difference %.2g of the tensor's largest entry (%s)", name, len(want), worst, worstName)
	if worst > tol {
		t.Errorf("%s: adapter tensor %s differs by %.2g of its largest entry (tolerance %g)", name, worstName, worst, tol)
	}
}

func readMetrics(t *testing.T, dir string) []train.Metrics {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []train.Metrics
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m train.Metrics
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// readAdapter reads an exported adapter's tensors as float32.
func readAdapter(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	ck, err := model.OpenSafetensors(filepath.Join(dir, "adapter", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, name := range ck.Names() {
		view, _, _ := ck.Tensor(name)
		tt, err := model.ViewToTensor(view, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = tensors.MustCopyFlatData[float32](tt)
	}
	return out
}

// One step from the same weights and batch (a kind=train fixture, LoRA on the vision tower too,
// dropout 0.1): on 2 devices the loss and the gradient norm equal the 1-device step's within
// 1e-6 relative (measured 6.5e-8 and 4.4e-7), every accumulated gradient and every updated
// tensor within 1e-5 of the tensor's largest entry (measured 4.3e-6 and 1.9e-6: the same bound,
// for the same reason, as TestCheckpointingMatchesEager on XLA: float32 sums in another order).
func TestDataParallelStepParity(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	if be.NumDevices() < 2 {
		t.Skipf("backend %s has %d device: data-parallel needs several (make test-xla-cpu)", be.Name(), be.NumDevices())
	}
	fxs, err := fixtures.Find("train")
	if err != nil || len(fxs) == 0 {
		t.Fatal("no kind=train fixtures", err)
	}
	fx := fxs[len(fxs)-1]
	groups := []train.Group{{Name: "lora", LR: 1e-3}, {Name: "full", LR: 1e-3}}
	type result struct {
		loss, norm float64
		grads      map[string][]float32
		params     map[string][]float32
	}
	step := func(devices int) result {
		m, st := fixtureStepper(t, be, fx, dtypes.Float32, optim.Defaults(), groups)
		st.Adapter.Config.LoraDropout = 0.1
		if err := m.Ctx.SetRNGStateFromSeed(7); err != nil {
			t.Fatal(err)
		}
		if err := st.UseDevices(devices, false); err != nil {
			t.Fatal(err)
		}
		batch := fixtureBatch(t, fx, m.Config)
		if batch.B%devices != 0 {
			t.Skipf("fixture batch has %d rows", batch.B)
		}
		if devices > 1 {
			t.Logf("batch: %d rows, %d images (split over the devices: %v)", batch.B, batch.M, batch.M%devices == 0)
		}
		sum, n, err := st.Accumulate(batch, 1)
		if err != nil {
			t.Fatal(err)
		}
		r := result{loss: sum / n, grads: map[string][]float32{}, params: map[string][]float32{}}
		for _, p := range st.Params {
			acc, err := p.Accumulated().Value()
			if err != nil {
				t.Fatal(err)
			}
			r.grads[p.Name] = tensors.MustCopyFlatData[float32](acc)
		}
		if r.norm, err = st.Apply([]float64{1e-3, 1e-3}); err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Params {
			v, err := p.Var.Value()
			if err != nil {
				t.Fatal(err)
			}
			r.params[p.Name] = tensors.MustCopyFlatData[float32](v)
		}
		return r
	}
	one, two := step(1), step(2)
	for _, c := range []struct {
		what      string
		got, want float64
	}{{"loss", two.loss, one.loss}, {"grad norm", two.norm, one.norm}} {
		rel := math.Abs(c.got-c.want) / math.Abs(c.want)
		t.Logf("%s: 2 devices %.9g, 1 device %.9g (rel %.2g)", c.what, c.got, c.want, rel)
		if !(rel <= 1e-6) {
			t.Errorf("%s: rel %.2g > 1e-6", c.what, rel)
		}
	}
	for _, c := range []struct {
		what      string
		got, want map[string][]float32
	}{{"gradient", two.grads, one.grads}, {"updated tensor", two.params, one.params}} {
		worst, worstName := 0.0, ""
		for name, w := range c.want {
			scale := 0.0
			for _, x := range w {
				scale = math.Max(scale, math.Abs(float64(x)))
			}
			for i, g := range c.got[name] {
				if d := math.Abs(float64(g)-float64(w[i])) / math.Max(scale, 1e-12); !(d <= worst) {
					worst, worstName = d, name
				}
			}
		}
		t.Logf("%s: worst difference %.2g of the tensor's largest entry (%s)", c.what, worst, worstName)
		if worst > 1e-5 {
			t.Errorf("%s %s differs by %.2g of its largest entry (tolerance 1e-5)", c.what, worstName, worst)
		}
	}
}

// train.devices: "all" takes every device; more devices than the backend has, or a batch that
// does not split over them, is one line saying what to change.
func TestResolveDevices(t *testing.T) {
	for _, c := range []struct {
		spec         string
		have, batch  int
		want         int
		errSubstring string
	}{
		{"1", 1, 3, 1, ""},
		{"all", 4, 8, 4, ""},
		{" 2 ", 4, 4, 2, ""},
		{"8", 4, 8, 0, "the backend has 4 device(s)"},
		{"3", 4, 4, 0, "train.batch_size = 4 does not split over train.devices = 3"},
		{"all", 4, 2, 0, "train.batch_size = 2 does not split over train.devices = 4"},
		{"-1", 4, 4, 0, `train.devices = "-1": must be a whole number ≥ 1 or "all"`},
	} {
		got, err := train.ResolveDevices(c.spec, c.have, c.batch)
		switch {
		case c.errSubstring == "" && (err != nil || got != c.want):
			t.Errorf("ResolveDevices(%q, %d, %d) = %d, %v; want %d", c.spec, c.have, c.batch, got, err, c.want)
		case c.errSubstring != "" && (err == nil || !strings.Contains(err.Error(), c.errSubstring)):
			t.Errorf("ResolveDevices(%q, %d, %d): got %v, want an error containing %q", c.spec, c.have, c.batch, err, c.errSubstring)
		}
	}
}
