package lora_test

import (
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
)

// TestSiblingAdapters: adapters attached to siblings of one base (what the server does) give
// PEFT's logits, share every base tensor they do not replace, and leave the base's own logits
// bit for bit as before, modules_to_save included.
func TestSiblingAdapters(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range adapterFixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			base, err := model.Load(fx.Dir, dtypes.Float32)
			if err != nil {
				t.Fatal(err)
			}
			in := fixtureInputs(t, fx)
			before, mask := runLogits(t, be, base, in)
			sib := base.Sibling()
			ad, err := lora.OpenAdapterDir(filepath.Join(fx.Dir, "adapter"), sib.Config)
			if err != nil {
				t.Fatal(err)
			}
			defer ad.Close()
			if _, err := ad.Attach(sib); err != nil {
				t.Fatal(err)
			}
			shared, replaced := 0, 0
			for v := range base.Ctx.IterVariables() {
				bt, _ := v.Value()
				st, _ := sib.Variable(model.TensorName(v.Scope(), v.Name())).Value()
				if bt == st {
					shared++
				} else {
					replaced++
				}
			}
			t.Logf("%d base tensors shared, %d replaced by the adapter", shared, replaced)
			if shared == 0 {
				t.Error("the sibling shares no tensor with the base")
			}
			want, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "expected.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := runLogits(t, be, sib, in)
			if d := maxMaskedDiff(got, want["logits"].F, mask, sib.Config.Text.VocabSize); d > fx.Meta.Atol {
				t.Errorf("sibling + adapter vs PEFT: max |logit diff| %.3g > %g", d, fx.Meta.Atol)
			}
			after, _ := runLogits(t, be, base, in)
			if d := maxMaskedDiff(after, widen(before), mask, base.Config.Text.VocabSize); d != 0 {
				t.Errorf("the base's logits moved by %.3g after an adapter attached to its sibling", d)
			}
		})
	}
}
