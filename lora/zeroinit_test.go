package lora_test

import (
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
)

// With PEFT's initialisation (lora_B = 0; DoRA magnitudes = row norms of W) the adapted model
// computes exactly what the base model computes: identical logits, bit for bit, for LoRA on
// every Linear of every tower, and for DoRA.
func TestZeroInitIsIdentity(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(fixtureRoot(t), "model-multi-image-sizes")
	raw, err := fixtures.ReadTensors(filepath.Join(dir, "inputs.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := fixtures.ModelInputs(raw)
	if err != nil {
		t.Fatal(err)
	}
	logits := func(cfg *lora.Config) []float32 {
		m, err := model.Load(dir, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		if cfg != nil {
			a, err := lora.Attach(m, *cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Modules) == 0 {
				t.Fatal("no module targeted")
			}
		}
		b, err := model.NewBatch(m.Config, in)
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Run(be, b)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.MustCopyFlatData[float32](res.Logits)
	}
	base := logits(nil)
	all := lora.Config{R: 4, LoraAlpha: 8, TargetModules: lora.TargetModules{Regex: `.*(proj|fc1|fc2|lm_head)$`}}
	dora := lora.Config{R: 2, LoraAlpha: 2, UseDoRA: true, InitLoraWeights: "true", TargetModules: lora.TargetModules{Names: []string{"q_proj", "down_proj"}}}
	for name, cfg := range map[string]lora.Config{"lora": all, "dora": dora} {
		got := logits(&cfg)
		diff := 0.0
		for i := range base {
			if d := float64(got[i] - base[i]); d > diff || -d > diff {
				diff = max(d, -d)
			}
		}
		// DoRA rescales by m/‖W‖ = 1 computed in float32, so allow its rounding only.
		limit := 0.0
		if cfg.UseDoRA {
			limit = 1e-5
		}
		t.Logf("%s: max |logit diff| vs base %.3g", name, diff)
		if diff > limit {
			t.Errorf("%s: zero-initialised adapter changes the logits by %.3g", name, diff)
		}
	}
}

func fixtureRoot(t *testing.T) string {
	roots := fixtures.Roots()
	if len(roots) == 0 {
		t.Fatal("no fixture root")
	}
	return roots[0]
}
