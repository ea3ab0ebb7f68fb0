package train_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
	"github.com/idefics2/idefics2/train"
)

// Mixed precision: frozen weights and activations in bf16, trained tensors as float32 masters.
// On every kind=train fixture the bf16 loss stays within 2% of PEFT's (float64) value and every
// gradient points the way PEFT's does: cosine similarity ≥ 0.95 per tensor (measured ≥ 0.963, the
// lowest on the vision tower's LoRA, the deepest path through bf16). bf16 keeps 8 mantissa bits
// and the pure Go backend truncates, so values move by a few percent; a missing cast or a norm
// left in bf16 moves them far more. The masters are float32 and stay finite after a step.
func TestMixedPrecisionTrainStep(t *testing.T) {
	fxs, err := fixtures.Find("train")
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) {
			m, st := fixtureStepper(t, be, fx, dtypes.BFloat16, optim.Defaults(), []train.Group{{LR: 1e-3}, {LR: 1e-3}})
			want, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "expected.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			b := fixtureBatch(t, fx, m.Config)
			n := 0.0
			for _, x := range b.Targets {
				if x != model.IgnoreIndex {
					n++
				}
			}
			sum, _, err := st.Accumulate(b, n)
			if err != nil {
				t.Fatal(err)
			}
			ref := want["loss"].F[0]
			if rel := math.Abs(sum/n-ref) / ref; !(rel <= 0.02) { // NaN fails too
				t.Errorf("bf16 loss %.5f, reference %.5f (%.2g relative)", sum/n, ref, rel)
			}
			worst := 1.0
			for _, p := range st.Params {
				if dt := p.Var.Shape().DType; dt != dtypes.Float32 {
					t.Fatalf("%s is %s, want a float32 master", p.Name, dt)
				}
				acc, err := p.Accumulated().Value()
				if err != nil {
					t.Fatal(err)
				}
				got := tensors.MustCopyFlatData[float32](acc)
				w := want["grad."+lora.PeftPrefix+p.Name].F
				dot, ng, nw := 0.0, 0.0, 0.0
				for i := range w {
					dot += float64(got[i]) * w[i]
					ng += float64(got[i]) * float64(got[i])
					nw += w[i] * w[i]
				}
				if nw == 0 {
					continue
				}
				cos := dot / math.Sqrt(ng*nw)
				worst = math.Min(worst, cos)
				if !(cos >= 0.95) { // NaN fails too
					t.Errorf("%s: bf16 gradient has cosine %.4f with PEFT's", p.Name, cos)
				}
			}
			if _, err := st.Apply([]float64{1e-3, 1e-3}); err != nil {
				t.Fatal(err)
			}
			sum2, _, err := st.Accumulate(b, n)
			if err != nil || math.IsNaN(sum2) {
				t.Fatalf("after one step: loss sum %v, err %v", sum2, err)
			}
			t.Logf("bf16 loss %.5f (reference %.5f); worst gradient cosine %.5f; after one step %.5f", sum/n, ref, worst, sum2/n)
		})
	}
}
