package train_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
	"github.com/idefics2/idefics2/train"
)

type trainJSON struct {
	LR          float64   `json:"lr"`
	Betas       []float64 `json:"betas"`
	Eps         float64   `json:"eps"`
	WeightDecay float64   `json:"weight_decay"`
	MaxGradNorm float64   `json:"max_grad_norm"`
	Steps       int       `json:"steps"`
}

// TestTrainParity compares, for every kind=train fixture (PEFT on the same tiny model, adapter
// and batch): the loss, the gradient of every trainable tensor (LoRA A/B, DoRA magnitudes, the
// fully trained connector) and the losses after each of K AdamW steps with clipping.
func TestTrainParity(t *testing.T) {
	fxs, err := fixtures.Find("train")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=train fixtures found under", fixtures.Roots())
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs {
		for _, mode := range stepModes {
			t.Run(fx.Name+"/"+mode.name, func(t *testing.T) {
				trainParity(t, be, fx, mode)
			})
		}
	}
}

func trainParity(t *testing.T, be backends.Backend, fx fixtures.Fixture, mode stepMode) {
	{
		{
			var hp trainJSON
			data, err := os.ReadFile(filepath.Join(fx.Dir, "train.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &hp); err != nil {
				t.Fatalf("%s/train.json: %v", fx.Dir, err)
			}
			opt := optim.AdamW{Beta1: hp.Betas[0], Beta2: hp.Betas[1], Eps: hp.Eps, MaxGradNorm: hp.MaxGradNorm}
			groups := []train.Group{{Name: "lora", LR: hp.LR, WeightDecay: hp.WeightDecay}, {Name: "full", LR: hp.LR, WeightDecay: hp.WeightDecay}}
			m, st := fixtureStepper(t, be, fx, dtypes.Float32, opt, groups, useMode(t, mode))
			// Only what trains has optimizer state and a gradient accumulator: three float32 tensors
			// per trainable tensor under /optim, none for the frozen weights.
			state := 0
			for v := range m.Ctx.IterVariables() {
				if strings.HasPrefix(v.Scope(), "/optim/") {
					state++
				}
			}
			if state != 3*len(st.Params) {
				t.Errorf("%d optimizer-state tensors for %d trainable tensors, want 3 each", state, len(st.Params))
			}
			batch := fixtureBatch(t, fx, m.Config)
			want, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "expected.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			count := 0.0
			for _, x := range batch.Targets {
				if x != model.IgnoreIndex {
					count++
				}
			}
			sum, n, err := st.Accumulate(batch, count)
			if err != nil {
				t.Fatal(err)
			}
			if n != count {
				t.Fatalf("graph counted %v targets, host %v", n, count)
			}
			checkScalar(t, "loss", sum/n, want["loss"].F[0], fx.Meta.Rtol)

			worstRel := 0.0
			checked := 0
			for _, p := range st.Params {
				w, ok := want["grad."+lora.PeftPrefix+p.Name]
				if !ok {
					t.Errorf("fixture has no gradient for %s", p.Name)
					continue
				}
				acc, err := p.Accumulated().Value()
				if err != nil {
					t.Fatal(err)
				}
				got := tensors.MustCopyFlatData[float32](acc)
				maxAbs, ok, worst := fixtures.MaxDiff(got, w.F, fx.Meta.Atol, fx.Meta.Rtol)
				scale := maxAbsOf(w.F)
				if rel := maxAbs / math.Max(scale, 1e-12); rel > worstRel {
					worstRel = rel
				}
				if !ok {
					t.Errorf("grad %s: max |diff| %.3g at %d (got %g, reference %g)", p.Name, maxAbs, worst, got[worst], w.F[worst])
				}
				checked++
			}
			if checked != len(want)-1-hp.Steps {
				t.Errorf("compared %d gradients, the fixture has %d", checked, len(want)-1-hp.Steps)
			}
			t.Logf("%d trainable tensors; worst gradient diff relative to the tensor's largest entry: %.3g", checked, worstRel)

			for k := 1; k <= hp.Steps; k++ {
				if _, err := st.Apply([]float64{hp.LR, hp.LR}); err != nil {
					t.Fatal(err)
				}
				sum, n, err := st.Accumulate(batch, count)
				if err != nil {
					t.Fatal(err)
				}
				name := "loss_step_" + itoa(k)
				checkScalar(t, name, sum/n, want[name].F[0], 1e-5)
			}
		}
	}
}

func checkScalar(t *testing.T, name string, got, want, rtol float64) {
	t.Helper()
	rel := math.Abs(got-want) / math.Max(math.Abs(want), 1e-12)
	t.Logf("%-12s %.7f reference %.7f rel diff %.2g", name, got, want, rel)
	if !(rel <= rtol) { // NaN fails too
		t.Errorf("%s = %.7g, reference %.7g (relative diff %.2g > %g)", name, got, want, rel, rtol)
	}
}

func maxAbsOf(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

func itoa(k int) string { return fmtInt(k) }
