package main

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/train"
	"github.com/nlpodyssey/safetensors"
)

func baseFixture(t *testing.T) string {
	t.Helper()
	fxs, err := fixtures.Find("adapter")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs {
		if fx.Name == "adapter-lora-connector" {
			return fx.Dir
		}
	}
	t.Fatal("fixture adapter-lora-connector not found")
	return ""
}

// trainedAdapter attaches cfg to the base, gives every trainable tensor random values and
// returns them by trainer name (as idefics2-train's checkpoints name them).
func trainedAdapter(t *testing.T, base string, cfg lora.Config) map[string]*tensors.Tensor {
	params, _, _ := trainedModel(t, base, cfg)
	return params
}

// trainedModel is trainedAdapter, also returning the adapter holding those values and the names
// of the fully trained tensors, as the trainer has them at the end of a run.
func trainedModel(t *testing.T, base string, cfg lora.Config) (map[string]*tensors.Tensor, *lora.Adapter, []string) {
	t.Helper()
	m, err := model.Load(base, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.Attach(m, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	vars := a.Variables()
	saved, err := lora.ModulesToSave(m.Config, cfg.ModulesToSave)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Config.Params() {
		for _, s := range saved {
			if strings.HasPrefix(p.Name, s+".") {
				vars[p.Name] = m.Variable(p.Name)
			}
		}
	}
	var full []string
	for _, p := range m.Config.Params() {
		for _, s := range saved {
			if strings.HasPrefix(p.Name, s+".") {
				full = append(full, p.Name)
			}
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	out := map[string]*tensors.Tensor{}
	for _, n := range sortedKeys(vars) {
		v := vars[n]
		val := tensors.FromShape(v.Shape())
		tensors.MustMutableFlatData(val, func(f []float32) {
			for i := range f {
				f[i] = float32(0.2 * rng.NormFloat64())
			}
		})
		out[n] = val
		if err := v.SetValue(val); err != nil {
			t.Fatal(err)
		}
	}
	return out, a, full
}

// writeCheckpoint writes a checkpoint directory as idefics2-train does (param/, exp_avg/,
// exp_avg_sq/ tensors in trainer_state.safetensors).
func writeCheckpoint(t *testing.T, dir string, params map[string]*tensors.Tensor) {
	t.Helper()
	views := map[string]safetensors.TensorView{}
	for n, val := range params {
		v, err := model.TensorToView(val, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		views["param/"+n] = v
		views["exp_avg/"+n] = v
		views["exp_avg_sq/"+n] = v
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := model.WriteSafetensors(filepath.Join(dir, "trainer_state.safetensors"), views, map[string]string{"format": "idefics2-train"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "trainer_state.json"), []byte(`{"step": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTrainYAML writes the training config of a run on base (LoRA r 4, α 8 on the modules the
// regex selects, connector fully trained) into dir.
func writeTrainYAML(t *testing.T, dir, base, regex string) string {
	t.Helper()
	path := filepath.Join(dir, "train.yaml")
	err := os.WriteFile(path, []byte(`model:
  path: `+base+`
data:
  train:
    - {kind: cauldron, path: nowhere}
lora:
  r: 4
  alpha: 8
  dropout: 0.05
  target_modules: '`+regex+`'
train:
  modules_to_save: [connector]
  max_steps: 3
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func checkImported(t *testing.T, base, adapterDir string, want map[string]*tensors.Tensor) {
	t.Helper()
	m, err := model.Load(base, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := lora.ReadConfig(filepath.Join(adapterDir, lora.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.Attach(m, cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := lora.LoadAdapterWeights(a, filepath.Join(adapterDir, lora.WeightsFile)); err != nil {
		t.Fatal(err)
	}
	vars := a.Variables()
	for n, w := range want {
		v := vars[n]
		if v == nil {
			v = m.Variable(n)
		}
		val, err := v.Value()
		if err != nil {
			t.Fatal(err)
		}
		g, e := tensors.MustCopyFlatData[float32](val), tensors.MustCopyFlatData[float32](w)
		for i := range e {
			if math.Float32bits(g[i]) != math.Float32bits(e[i]) {
				t.Fatalf("%s[%d] = %g after export → import, trained %g", n, i, g[i], e[i])
			}
		}
	}
}

// TestExportCheckpoint: `export` turns a training checkpoint into a PEFT adapter that imports
// back bit for bit, with the LoRA settings from the training YAML or from an adapter_config.json;
// a configuration that does not match the checkpoint is an error saying so.
func TestExportCheckpoint(t *testing.T) {
	base := baseFixture(t)
	cfg := lora.Config{R: 4, LoraAlpha: 8, LoraDropout: 0.05, InitLoraWeights: "gaussian", PeftType: "LORA", Bias: "none",
		TargetModules: lora.TargetModules{Regex: `.*(text_model|modality_projection|perceiver_resampler).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$`},
		ModulesToSave: []string{"connector"}, BaseModel: base}
	params := trainedAdapter(t, base, cfg)
	tmp := t.TempDir()
	run := filepath.Join(tmp, "run")
	writeCheckpoint(t, filepath.Join(run, "checkpoint-0000003"), params)

	yaml := writeTrainYAML(t, tmp, base, cfg.TargetModules.Regex)
	out := filepath.Join(tmp, "adapter")
	if err := runExport([]string{"--checkpoint", run, "--config", yaml, "--out", out}); err != nil {
		t.Fatal(err)
	}
	checkImported(t, base, out, params)

	js, err := cfg.PeftJSON()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(tmp, "adapter_config.json")
	if err := os.WriteFile(cfgFile, js, 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(tmp, "adapter2")
	if err := runExport([]string{"--checkpoint", filepath.Join(run, "checkpoint-0000003"), "--adapter-config", cfgFile, "--base", base, "--out", out2}); err != nil {
		t.Fatal(err)
	}
	a1, _ := os.ReadFile(filepath.Join(out, lora.WeightsFile))
	a2, _ := os.ReadFile(filepath.Join(out2, lora.WeightsFile))
	if string(a1) != string(a2) {
		t.Error("--config and --adapter-config exports differ")
	}

	err = runExport([]string{"--checkpoint", run, "--config", yaml, "--set", "lora.r=8", "--out", filepath.Join(tmp, "bad")})
	if err == nil || !strings.Contains(err.Error(), "trained with") || !strings.Contains(err.Error(), "trainer_state.safetensors") {
		t.Errorf("mismatched rank: %v", err)
	}

	// import --out of a key variant gives back the exported file; merge writes a loadable model.
	canon := filepath.Join(tmp, "canonical")
	if err := runImport([]string{"--base", base, "--adapter", out, "--out", canon}); err != nil {
		t.Fatal(err)
	}
	c1, _ := os.ReadFile(filepath.Join(canon, lora.WeightsFile))
	if string(c1) != string(a1) {
		t.Error("import --out of a PEFT-format adapter changed the file")
	}
	merged := filepath.Join(tmp, "merged")
	if err := runMerge([]string{"--base", base, "--adapter", out, "--out", merged, "--max-shard-size", "100KB", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := model.Load(merged, dtypes.Float32); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(merged, "model.safetensors.index.json")); err != nil {
		t.Error(err)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"5GB": 5e9, "2GiB": 2 << 30, "500MB": 5e8, "64KiB": 64 << 10, "1234": 1234, "1.5GB": 15e8} {
		got, err := parseSize(s)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GB", "-1MB", "5XB"} {
		if _, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) accepted", s)
		}
	}
}

// TestExportMatchesTrainer: `export --config` with rank and alpha patterns and kaiming init
// writes exactly what the trainer writes for the same run (the same adapter_config.json and
// the same tensors, byte for byte), because both map the training config through
// train.Config.AdapterConfig and write through lora.WriteAdapterDir. PEFT's spelling of
// kaiming is init_lora_weights=true.
func TestExportMatchesTrainer(t *testing.T) {
	base := baseFixture(t)
	tmp := t.TempDir()
	yaml := writeTrainYAML(t, tmp, base, `.*(text_model|modality_projection|perceiver_resampler).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$`)
	sets := []string{"lora.rank_pattern={v_proj: 3}", "lora.alpha_pattern={down_proj: 2.5}", "lora.init=kaiming"}
	tc, err := train.LoadConfig(yaml, sets)
	if err != nil {
		t.Fatal(err)
	}
	params, a, full := trainedModel(t, base, tc.AdapterConfig())
	// What the trainer writes at the end of the run: lora.Export of the attached adapter.
	trained := filepath.Join(tmp, "trained")
	if err := lora.Export(a, trained, full, dtypes.Float32); err != nil {
		t.Fatal(err)
	}

	run := filepath.Join(tmp, "run")
	writeCheckpoint(t, filepath.Join(run, "checkpoint-0000003"), params)
	out := filepath.Join(tmp, "exported")
	args := []string{"--checkpoint", run, "--config", yaml, "--out", out}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	if err := runExport(args); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{lora.ConfigFile, lora.WeightsFile} {
		want, _ := os.ReadFile(filepath.Join(trained, f))
		got, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs between export and the trainer:\n%.600s\n%.600s", f, got, want)
		}
	}
	js, _ := os.ReadFile(filepath.Join(out, lora.ConfigFile))
	for _, want := range []string{`"init_lora_weights": true`, `"v_proj": 3`, `"down_proj": 2.5`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("adapter_config.json lacks %s:\n%s", want, js)
		}
	}
	checkImported(t, base, out, params)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
