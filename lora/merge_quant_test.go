package lora_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
)

// TestQLoRAAdapterFixtures runs every kind=qadapter fixture (a PEFT adapter trained on a
// bitsandbytes 4-bit base):
//   - the 4-bit base (quantized on load) + the adapter gives PEFT's logits (1e-4, as kind=model:
//     identical weights, float32 summation order);
//   - merging with Dequantize reproduces transformers' model.dequantize() + PEFT's
//     merge_and_unload() tensor by tensor: bit-identical where no adapter applies (the
//     dequantized weights are bitsandbytes' own values), within 1e-6 of the tensor's largest
//     entry where it does (B·A is summed in float64 here, in float32 by PEFT), and the merged
//     model gives PEFT's merged logits within 1e-4.
func TestQLoRAAdapterFixtures(t *testing.T) {
	fxs, err := fixtures.Find("qadapter")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=qadapter fixtures found under", fixtures.Roots())
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) {
			var meta struct {
				Quantization struct {
					QuantType   string `json:"quant_type"`
					DoubleQuant bool   `json:"double_quant"`
				} `json:"quantization"`
			}
			data, err := os.ReadFile(filepath.Join(fx.Dir, "meta.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &meta); err != nil {
				t.Fatal(err)
			}
			q, err := model.ParseQuantization(meta.Quantization.QuantType, meta.Quantization.DoubleQuant)
			if err != nil || !q.Enabled() {
				t.Fatalf("%s/meta.json: %+v %v", fx.Dir, meta.Quantization, err)
			}
			want, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "expected.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range want {
				for _, x := range w.F {
					if math.IsNaN(x) || math.IsInf(x, 0) {
						t.Fatalf("%s holds %g", name, x)
					}
				}
			}
			in := fixtureInputs(t, fx)
			adapterDir := filepath.Join(fx.Dir, "adapter")

			// 4-bit base + adapter
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
			acfg, err := lora.ReadConfig(filepath.Join(adapterDir, lora.ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			a, err := lora.Attach(m, acfg, 3)
			if err != nil {
				t.Fatal(err)
			}
			if err := lora.LoadAdapterWeights(a, filepath.Join(adapterDir, lora.WeightsFile)); err != nil {
				t.Fatal(err)
			}
			got, mask := runLogits(t, be, m, in)
			d := maxMaskedDiff(got, want["logits"].F, mask, cfg.Text.VocabSize)
			t.Logf("4-bit base + adapter: logits max |diff| %.3g", d)
			if d > fx.Meta.Atol {
				t.Errorf("4-bit base + adapter: logits max |diff| %.3g > %g", d, fx.Meta.Atol)
			}

			// merge of the dequantized base
			out := filepath.Join(t.TempDir(), "merged")
			res, err := lora.Merge(fx.Dir, adapterDir, out, lora.MergeOptions{Dequantize: q, QuantizedFrom: dtypes.Float32})
			if err != nil {
				t.Fatal(err)
			}
			merged, err := fixtures.ReadTensors(filepath.Join(out, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			adapted := 0
			for name, g := range merged {
				w, ok := want["merged."+name]
				if !ok {
					t.Errorf("PEFT's merged model has no %s", name)
					continue
				}
				module := strings.TrimSuffix(name, ".weight")
				tol := 0.0
				if acfg.Targets(module) && strings.HasSuffix(name, ".weight") {
					adapted++
					tol = 1e-6 * maxAbs(w.F)
				}
				for i := range w.F {
					if math.Abs(g.F[i]-w.F[i]) > tol {
						t.Errorf("%s[%d] = %g, PEFT's merge %g (tolerance %.3g)", name, i, g.F[i], w.F[i], tol)
						break
					}
				}
			}
			if adapted != res.Merged || adapted == 0 {
				t.Errorf("%d adapted tensors compared, Merge merged %d", adapted, res.Merged)
			}
			mm, err := model.Load(out, dtypes.Float32)
			if err != nil {
				t.Fatal(err)
			}
			got, mask = runLogits(t, be, mm, in)
			d = maxMaskedDiff(got, want["merged_logits"].F, mask, cfg.Text.VocabSize)
			t.Logf("merged: logits max |diff| %.3g", d)
			if d > fx.Meta.Atol {
				t.Errorf("merged: logits max |diff| %.3g > %g", d, fx.Meta.Atol)
			}
		})
	}
}

func maxAbs(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = math.Max(m, math.Abs(x))
	}
	return m
}
