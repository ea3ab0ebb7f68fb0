package train_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
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

// configs/sft-qlora.yaml is the tutorial's QLoRA recipe: NF4 storage, LoRA (no DoRA) on the text
// model and the connector by regex, nothing fully trained.
func TestQLoRAConfig(t *testing.T) {
	cfg, err := train.LoadConfig(filepath.Join(repoRoot(t), "configs/sft-qlora.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Quantization != "nf4" || cfg.Model.DoubleQuant {
		t.Errorf("model.quantization %q double_quant %v, want nf4 without double quantization", cfg.Model.Quantization, cfg.Model.DoubleQuant)
	}
	if cfg.LoRA.UseDoRA || cfg.LoRA.R != 8 || cfg.LoRA.Alpha != 8 || cfg.LoRA.Dropout != 0.1 || len(cfg.Train.ModulesToSave) != 0 {
		t.Errorf("lora %+v modules_to_save %v: want r=8 alpha=8 dropout 0.1, no DoRA, nothing fully trained", cfg.LoRA, cfg.Train.ModulesToSave)
	}
	if !strings.Contains(cfg.LoRA.TargetModules, "modality_projection|perceiver_resampler") {
		t.Errorf("target_modules %q does not reach the connector", cfg.LoRA.TargetModules)
	}
	if _, err := train.LoadConfig(filepath.Join(repoRoot(t), "configs/sft-qlora.yaml"), []string{"model.quantization=int4"}); err == nil ||
		!strings.Contains(err.Error(), "model.quantization") {
		t.Errorf("model.quantization=int4: error %v, want one naming model.quantization", err)
	}
}

// TestQLoRAParity compares, for every kind=qtrain fixture (PEFT LoRA on transformers' bitsandbytes
// 4-bit base, same tiny model, adapter and batch), the loss, every LoRA gradient and the losses
// after K AdamW steps with clipping. The base is quantized here on load (bit-identical to
// bitsandbytes: see quant and model's qmodel fixtures), the weights dequantized per layer in the
// graph. Tolerances are the fixture's: float32 against a float64 reference on the same
// dequantized weights.
func TestQLoRAParity(t *testing.T) {
	fxs, err := fixtures.Find("qtrain")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=qtrain fixtures found under", fixtures.Roots())
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) {
			var hp trainJSON
			var meta struct {
				Quantization struct {
					QuantType   string `json:"quant_type"`
					DoubleQuant bool   `json:"double_quant"`
				} `json:"quantization"`
			}
			for f, v := range map[string]any{"train.json": &hp, "meta.json": &meta} {
				data, err := os.ReadFile(filepath.Join(fx.Dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(data, v); err != nil {
					t.Fatalf("%s/%s: %v", fx.Dir, f, err)
				}
			}
			q, err := model.ParseQuantization(meta.Quantization.QuantType, meta.Quantization.DoubleQuant)
			if err != nil || !q.Enabled() {
				t.Fatalf("%s/meta.json: quantization %+v: %v", fx.Dir, meta.Quantization, err)
			}
			cfg, err := model.LoadConfig(filepath.Join(fx.Dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			ck, err := model.OpenCheckpoint(fx.Dir)
			if err != nil {
				t.Fatal(err)
			}
			m := model.New(cfg, dtypes.Float32)
			m.Quant = q
			err = m.LoadWeights(ck)
			ck.Close()
			if err != nil {
				t.Fatal(err)
			}
			if v := m.Variable("model.text_model.layers.0.mlp.up_proj.weight"); v == nil || v.MustValue().DType() != dtypes.Uint8 {
				t.Fatal("the base was not quantized")
			}
			lcfg, err := lora.ReadConfig(filepath.Join(fx.Dir, "adapter_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			adapter, err := lora.Attach(m, lcfg, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkDoRAInit(t, fx, adapter)
			if err := lora.LoadAdapterWeights(adapter, filepath.Join(fx.Dir, "adapter_init.safetensors")); err != nil {
				t.Fatal(err)
			}
			opt := optim.AdamW{Beta1: hp.Betas[0], Beta2: hp.Betas[1], Eps: hp.Eps, MaxGradNorm: hp.MaxGradNorm}
			groups := []train.Group{{Name: "lora", LR: hp.LR, WeightDecay: hp.WeightDecay}, {Name: "full", LR: hp.LR, WeightDecay: hp.WeightDecay}}
			st, err := train.NewStepper(be, m, adapter, nil, opt, groups)
			if err != nil {
				t.Fatal(err)
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
			// (fixtures.MaxDiff and checkScalar let a NaN reference pass: refuse one here.)
			for name, w := range want {
				for _, x := range w.F {
					if math.IsNaN(x) || math.IsInf(x, 0) {
						t.Fatalf("%s/expected.safetensors: %s holds %g", fx.Dir, name, x)
					}
				}
			}
			checkScalar(t, "loss", sum/n, want["loss"].F[0], fx.Meta.Rtol)
			checked, worstRel := 0, 0.0
			for _, p := range st.Params {
				w, ok := want["grad."+lora.PeftPrefix+p.Name]
				if !ok {
					t.Errorf("fixture has no gradient for %s", p.Name)
					continue
				}
				got := tensors.MustCopyFlatData[float32](p.Accumulated().MustValue())
				maxAbs, ok, worst := fixtures.MaxDiff(got, w.F, fx.Meta.Atol, fx.Meta.Rtol)
				if rel := maxAbs / math.Max(maxAbsOf(w.F), 1e-12); rel > worstRel {
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
			t.Logf("%d LoRA tensors; worst gradient diff relative to the tensor's largest entry: %.3g", checked, worstRel)
			for k := 1; k <= hp.Steps; k++ {
				if _, err := st.Apply([]float64{hp.LR, hp.LR}); err != nil {
					t.Fatal(err)
				}
				sum, n, err := st.Accumulate(batch, count)
				if err != nil {
					t.Fatal(err)
				}
				checkScalar(t, "loss_step_"+itoa(k), sum/n, want["loss_step_"+itoa(k)].F[0], 1e-5)
			}
		})
	}
}

// A module stored in 4 bits by a pre-quantized checkpoint cannot be fully trained: one line says
// so instead of a conversion panic.
func TestFullTrainOfPackedModule(t *testing.T) {
	fxs, err := fixtures.Find("qmodel")
	if err != nil || len(fxs) == 0 {
		t.Fatal("no kind=qmodel fixtures", err)
	}
	m, err := model.Load(filepath.Join(fxs[0].Dir, "prequantized"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	_, err = train.FullTrain(m, []string{"model.connector"})
	if err == nil || !strings.Contains(err.Error(), "stored in 4 bits") || strings.Contains(err.Error(), "\n") {
		t.Errorf("FullTrain of a 4-bit connector: error %v, want one line saying it is stored in 4 bits", err)
	}
}

// checkDoRAInit compares DoRA's initial magnitudes, the row norms of the dequantized 4-bit
// weights, with PEFT's (dora_init.safetensors): within 1e-6 relative, PEFT's float32 norm against
// a float64 sum here.
func checkDoRAInit(t *testing.T, fx fixtures.Fixture, a *lora.Adapter) {
	t.Helper()
	path := filepath.Join(fx.Dir, "dora_init.safetensors")
	if _, err := os.Stat(path); err != nil {
		return
	}
	want, err := fixtures.ReadTensors(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := a.Variables()
	checked := 0
	for key, w := range want {
		v, ok := vars[strings.TrimPrefix(key, lora.PeftPrefix)]
		if !ok {
			t.Errorf("%s: no such adapter variable", key)
			continue
		}
		got := tensors.MustCopyFlatData[float32](v.MustValue())
		if maxAbs, ok, worst := fixtures.MaxDiff(got, w.F, 0, 1e-6); !ok {
			t.Errorf("initial %s: max |diff| %.3g at %d (got %g, PEFT %g)", key, maxAbs, worst, got[worst], w.F[worst])
		}
		checked++
	}
	if checked == 0 {
		t.Errorf("%s holds no magnitudes", path)
	}
	t.Logf("%d DoRA magnitudes initialised as PEFT's on the 4-bit base", checked)
}
