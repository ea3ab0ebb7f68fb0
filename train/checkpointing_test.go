package train_test

import (
	"math"
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

// Checkpointing and blocked attention change what the backward pass keeps, not what it computes.
// With LoRA dropout on (so the recomputation must draw the same masks as the forward pass, a
// wrong mask changes gradients by ~10%), the loss and every gradient of a checkpointed step equal
// the uncheckpointed one's within 1e-6 of the tensor's largest entry on the pure Go backend (it
// runs the recomputation op for op as the forward pass: measured equal bit for bit); XLA fuses
// the recomputed layer differently from the forward pass, float32 sums in another order
// (measured 4.2e-6 on XLA's CPU plugin), so 1e-5 there. Blocked attention
// differentiates softmax by its closed form from the probabilities instead of op by op: float32
// sums in another order, within 1e-5.
func TestCheckpointingMatchesEager(t *testing.T) {
	fxs, err := fixtures.Find("train")
	if err != nil || len(fxs) == 0 {
		t.Fatal("no kind=train fixtures", err)
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	fx := fxs[len(fxs)-1]
	groups := []train.Group{{Name: "lora", LR: 1e-3}, {Name: "full", LR: 1e-3}}
	step := func(mode stepMode) (float64, map[string][]float32) {
		m, st := fixtureStepper(t, be, fx, dtypes.Float32, optim.Defaults(), groups, useMode(t, mode))
		st.Adapter.Config.LoraDropout = 0.1
		if err := m.Ctx.SetRNGStateFromSeed(7); err != nil {
			t.Fatal(err)
		}
		batch := fixtureBatch(t, fx, m.Config)
		sum, n, err := st.Accumulate(batch, 1)
		if err != nil {
			t.Fatal(err)
		}
		grads := map[string][]float32{}
		for _, p := range st.Params {
			acc, err := p.Accumulated().Value()
			if err != nil {
				t.Fatal(err)
			}
			grads[p.Name] = tensors.MustCopyFlatData[float32](acc)
		}
		return sum / n, grads
	}
	refLoss, ref := step(stepMode{"eager", model.AttentionEager, false})
	_, blocked := step(stepMode{"blocked", model.AttentionBlocked, false})
	ckTol := 1e-6
	if strings.HasPrefix(be.Name(), "xla") || strings.HasPrefix(be.Name(), "stablehlo") {
		ckTol = 1e-5
	}
	for _, c := range []struct {
		mode stepMode
		ref  map[string][]float32
		tol  float64
	}{
		{stepMode{"eager+checkpointing", model.AttentionEager, true}, ref, ckTol},
		{stepMode{"blocked", model.AttentionBlocked, false}, ref, 1e-5},
		{stepMode{"blocked+checkpointing", model.AttentionBlocked, true}, blocked, ckTol},
	} {
		mode, ref := c.mode, c.ref
		loss, grads := step(mode)
		if rel := math.Abs(loss-refLoss) / refLoss; rel > 1e-6 {
			t.Errorf("%s: loss %.8g, eager %.8g (rel %.2g)", mode.name, loss, refLoss, rel)
		}
		worst, worstName := 0.0, ""
		for name, want := range ref {
			got := grads[name]
			scale := 0.0
			for _, w := range want {
				scale = math.Max(scale, math.Abs(float64(w)))
			}
			for i := range want {
				d := math.Abs(float64(got[i]) - float64(want[i]))
				if math.IsNaN(d) || math.IsInf(d, 0) {
					t.Fatalf("%s: %s[%d] = %g, eager %g", mode.name, name, i, got[i], want[i])
				}
				if rel := d / math.Max(scale, 1e-12); rel > worst {
					worst, worstName = rel, name
				}
			}
		}
		t.Logf("%s: loss %.8g (eager %.8g), worst gradient diff from its reference %.2g of the tensor's largest entry (%s)", mode.name, loss, refLoss, worst, worstName)
		if worst > c.tol {
			t.Errorf("%s: gradient of %s differs by %.2g of its largest entry (tolerance %g)", mode.name, worstName, worst, c.tol)
		}
	}
}
