package model_test

import (
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

// TestParity runs every kind=model fixture (HF transformers' own outputs on the same weights
// and inputs) and compares each stage. The tolerance is the fixture's (1e-4 for f32): both sides
// compute in float32 but sum in different orders, and the differences grow through the layers
// to a few 1e-6 on these tiny models; 1e-4 leaves room for deeper fixtures while catching any
// real mistake (a wrong mask, bucket or epsilon moves values by 1e-3 or more).
func TestParity(t *testing.T) {
	fxs, err := fixtures.Find("model")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=model fixtures found under", fixtures.Roots())
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) { checkModelFixture(t, be, fx) })
	}
}

func checkModelFixture(t *testing.T, be any, fx fixtures.Fixture) {
	m, err := model.Load(fx.Dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fixtures.ReadTensors(fx.Dir + "/inputs.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	want, err := fixtures.ReadTensors(fx.Dir + "/expected.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	in, err := inputsFromFixture(raw)
	if err != nil {
		t.Fatalf("%s/inputs.safetensors: %v", fx.Dir, err)
	}
	batch, err := model.NewBatch(m.Config, in)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Run(backendOf(be), batch)
	if err != nil {
		t.Fatal(err)
	}
	atol, rtol := fx.Meta.Atol, fx.Meta.Rtol
	compare := func(name string, got *tensors.Tensor, mask func(i int) bool) {
		w, ok := want[name]
		if !ok {
			t.Errorf("%s/expected.safetensors has no %s", fx.Dir, name)
			return
		}
		if got == nil {
			t.Errorf("%s: not computed (batch has %d real images)", name, batch.M)
			return
		}
		if !slices.Equal(got.Shape().Dimensions, w.Shape) {
			t.Errorf("%s: shape %v, reference %v", name, got.Shape().Dimensions, w.Shape)
			return
		}
		g := tensors.MustCopyFlatData[float32](got)
		if mask != nil {
			for i := range g {
				if !mask(i) {
					g[i] = float32(w.F[i])
				}
			}
		}
		maxAbs, ok, worst := fixtures.MaxDiff(g, w.F, atol, rtol)
		t.Logf("%-26s max |diff| %.3g", name, maxAbs)
		if !ok {
			t.Errorf("%s: max |diff| %.3g at %d (got %g, reference %g) exceeds atol %g + rtol %g", name, maxAbs, worst, g[worst], w.F[worst], atol, rtol)
		}
	}
	if batch.M > 0 {
		compare("vision_last_hidden_state", res.Vision, nil)
		compare("image_hidden_states", res.ImageHidden, nil)
	}
	// Logits of padding positions depend on how an implementation treats fully masked rows;
	// nothing reads them, so they are not compared.
	vocab := m.Config.Text.VocabSize
	compare("logits", res.Logits, func(i int) bool { return batch.AttentionMask[i/vocab] != 0 })
	if res.Loss != nil {
		compare("loss", res.Loss, nil)
	}
}
