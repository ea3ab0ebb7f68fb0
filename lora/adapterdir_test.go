package lora_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/nlpodyssey/safetensors"
)

func fixtureDir(t *testing.T, name string) string {
	t.Helper()
	for _, fx := range adapterFixtures(t) {
		if fx.Name == name {
			return fx.Dir
		}
	}
	t.Fatalf("fixture %s not found", name)
	return ""
}

// randomize gives every listed variable random float32 values.
func randomize(t *testing.T, m *model.Model, a *lora.Adapter, full []string, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	vars := a.Variables()
	for _, n := range full {
		vars[n] = m.Variable(n)
	}
	for _, v := range vars {
		val := tensors.FromShape(v.Shape())
		tensors.MustMutableFlatData(val, func(f []float32) {
			for i := range f {
				f[i] = float32(0.3 * rng.NormFloat64())
			}
		})
		if err := v.SetValue(val); err != nil {
			t.Fatal(err)
		}
	}
}

func savedTensors(c model.Config, modules []string) []string {
	var out []string
	for _, p := range c.Params() {
		for _, m := range modules {
			if strings.HasPrefix(p.Name, m+".") {
				out = append(out, p.Name)
			}
		}
	}
	return out
}

// TestExportImportIdentity: an adapter exported (lora.Export, and WriteAdapterDir from named
// tensors as a training checkpoint holds them) and imported again gives back every tensor bit for
// bit in float32; both export paths write the same file.
func TestExportImportIdentity(t *testing.T) {
	base := fixtureDir(t, "adapter-lora-connector")
	cfg := lora.Config{R: 3, LoraAlpha: 5, UseDoRA: true, UseRSLoRA: true, InitLoraWeights: "gaussian", PeftType: "LORA",
		TargetModules: lora.TargetModules{Regex: `.*(text_model|vision_model|perceiver_resampler).*(q_proj|v_proj|fc1|down_proj)$`},
		RankPattern:   map[string]int{"fc1": 2}, AlphaPattern: map[string]float64{"v_proj": 7},
		ModulesToSave: []string{"connector"}, BaseModel: "tiny"}
	m, err := model.Load(base, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	a, err := lora.Attach(m, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := lora.ModulesToSave(m.Config, cfg.ModulesToSave)
	if err != nil {
		t.Fatal(err)
	}
	full := savedTensors(m.Config, saved)
	randomize(t, m, a, full, 7)
	want := variableBits(t, m, a, full)

	dir := filepath.Join(t.TempDir(), "exported")
	if err := lora.Export(a, dir, full, dtypes.Float32); err != nil {
		t.Fatal(err)
	}
	ad, err := lora.OpenAdapterDir(dir, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !ad.Canonical() {
		t.Errorf("Export wrote keys that are not PEFT's format (%s)", ad.Variant)
	}
	ad.Close()
	m2, a2 := withAdapter(t, base, dir)
	sameBits(t, "export → import", variableBits(t, m2, a2, full), want)

	// The same tensors by trainer name, as a training checkpoint stores them.
	views := map[string]safetensors.TensorView{}
	var names []string
	for n, bits := range want {
		v := m.Variable(n)
		if v == nil {
			v = a.Variables()[n]
		}
		val, _ := v.Value()
		view, err := model.TensorToView(val, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		views[n] = view
		names = append(names, n)
		_ = bits
	}
	layout, err := lora.NewLayout(m.Config, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(t.TempDir(), "from-checkpoint")
	get := func(n string) (safetensors.TensorView, bool) { v, ok := views[n]; return v, ok }
	if err := lora.WriteAdapterDir(dir2, layout, names, get, dtypes.Float32); err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(dir, lora.WeightsFile), filepath.Join(dir2, lora.WeightsFile))
	c1, _ := os.ReadFile(filepath.Join(dir, lora.ConfigFile))
	c2, _ := os.ReadFile(filepath.Join(dir2, lora.ConfigFile))
	if string(c1) != string(c2) {
		t.Errorf("adapter_config.json differs between Export and WriteAdapterDir:\n%s\n%s", c1, c2)
	}
	var js map[string]any
	if err := json.Unmarshal(c1, &js); err != nil {
		t.Fatal(err)
	}
	if _, isList := js["target_modules"].([]any); !isList {
		t.Errorf("targets overlapping modules_to_save must be written as the list of adapted modules, got %v", js["target_modules"])
	}
	m3, a3 := withAdapter(t, base, dir2)
	sameBits(t, "checkpoint export → import", variableBits(t, m3, a3, full), want)
}

// TestExportFoldsLoRAInsideSaved: a checkpoint whose trainer also adapted modules inside
// modules_to_save exports them folded into the fully trained weight, W + s·B·A.
func TestExportFoldsLoRAInsideSaved(t *testing.T) {
	base := fixtureDir(t, "adapter-lora-connector")
	c, err := model.LoadConfig(filepath.Join(base, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := lora.Config{R: 2, LoraAlpha: 6, PeftType: "LORA", TargetModules: lora.TargetModules{Names: []string{"gate_proj"}},
		ModulesToSave: []string{"modality_projection"}}
	layout, err := lora.NewLayout(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	views := map[string]safetensors.TensorView{}
	floats := map[string][]float32{}
	put := func(name string, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		f := make([]float32, n)
		for i := range f {
			f[i] = float32(rng.NormFloat64())
		}
		tt := tensors.FromFlatDataAndDimensions(f, shape...)
		v, err := model.TensorToView(tt, dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		views[name], floats[name] = v, f
	}
	for n, shape := range layout.LoRA {
		put(n, shape...)
	}
	for n, shape := range layout.Saved {
		put(n, shape...)
	}
	mod := "model.connector.modality_projection.gate_proj"
	out, in := c.Text.IntermediateSize, c.Vision.HiddenSize
	put(mod+".lora_A.weight", 2, in)
	put(mod+".lora_B.weight", out, 2)
	var names []string
	for n := range views {
		names = append(names, n)
	}
	dir := t.TempDir()
	get := func(n string) (safetensors.TensorView, bool) { v, ok := views[n]; return v, ok }
	if err := lora.WriteAdapterDir(dir, layout, names, get, dtypes.Float32); err != nil {
		t.Fatal(err)
	}
	ck, err := model.OpenSafetensors(filepath.Join(dir, lora.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if _, _, ok := ck.Tensor(lora.PeftPrefix + mod + ".lora_A.weight"); ok {
		t.Fatal("LoRA tensors of a modules_to_save module were exported as such")
	}
	v, _, ok := ck.Tensor(lora.PeftPrefix + mod + ".weight")
	if !ok {
		t.Fatal("the fully trained weight is missing")
	}
	got, err := model.ViewToTensor(v, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	g := tensors.MustCopyFlatData[float32](got)
	w, a, b := floats[mod+".weight"], floats[mod+".lora_A.weight"], floats[mod+".lora_B.weight"]
	worst := 0.0
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			d := 0.0
			for r := 0; r < 2; r++ {
				d += float64(b[o*2+r]) * float64(a[r*in+i])
			}
			want := float64(w[o*in+i]) + 3*d
			worst = math.Max(worst, math.Abs(float64(g[o*in+i])-want))
		}
	}
	if !(worst <= 1e-5) { // NaN fails too
		t.Errorf("folded weight differs from W + s·B·A by %.3g", worst)
	}
}

// TestAdapterErrors: unknown and mismatched adapters are one-line errors that name the file
// and say what to do.
func TestAdapterErrors(t *testing.T) {
	fx := fixtureDir(t, "adapter-dora-patterns")
	src := filepath.Join(fx, "adapter")
	c, err := model.LoadConfig(filepath.Join(fx, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	editConfig := func(dir string, f func(map[string]any)) {
		path := filepath.Join(dir, lora.ConfigFile)
		data, _ := os.ReadFile(path)
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		data, _ = json.Marshal(m)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	smaller := c
	smaller.Text.IntermediateSize = 40
	cases := []struct {
		name    string
		make    func() string
		base    model.Config
		wantSub []string
	}{
		{"no config", func() string { return t.TempDir() }, c, []string{"no adapter_config.json", "save_pretrained"}},
		{"full model given", func() string { return fx }, c, []string{"full model", "base model"}},
		{"pickle", func() string {
			d := rewriteKeys(t, src, func(k string) string { return k })
			os.Rename(filepath.Join(d, lora.WeightsFile), filepath.Join(d, "adapter_model.bin"))
			return d
		}, c, []string{"adapter_model.bin", "safe_serialization=True"}},
		{"other peft type", func() string {
			d := rewriteKeys(t, src, func(k string) string { return k })
			editConfig(d, func(m map[string]any) { m["peft_type"] = "PREFIX_TUNING" })
			return d
		}, c, []string{"PREFIX_TUNING", lora.ConfigFile}},
		{"unsupported setting", func() string {
			d := rewriteKeys(t, src, func(k string) string { return k })
			editConfig(d, func(m map[string]any) { m["layers_to_transform"] = []int{0} })
			return d
		}, c, []string{"layers_to_transform", "merge_and_unload"}},
		{"other model size", func() string { return src }, smaller, []string{"has shape", "pass the base it was trained on"}},
		{"targets nothing", func() string {
			d := rewriteKeys(t, src, func(k string) string { return k })
			editConfig(d, func(m map[string]any) { m["target_modules"] = []string{"c_attn"} })
			return d
		}, c, []string{"matches no Linear module", "base model"}},
		{"untargeted", func() string {
			d := rewriteKeys(t, src, func(k string) string { return k })
			editConfig(d, func(m map[string]any) { m["target_modules"] = []string{"q_proj", "v_proj", "down_proj"} })
			return d
		}, c, []string{"does not target", "belong together"}},
		{"missing", func() string {
			return rewriteKeys(t, src, func(k string) string {
				if strings.Contains(k, "text_model.layers.1.self_attn.q_proj.lora_A") {
					return "" // dropped
				}
				return k
			})
		}, c, []string{"missing although", lora.WeightsFile}},
		{"unknown tensor", func() string {
			return rewriteKeys(t, src, func(k string) string {
				if strings.HasSuffix(k, "text_model.layers.1.self_attn.q_proj.lora_magnitude_vector") {
					return lora.PeftPrefix + "model.text_model.layers.1.self_attn.q_proj.scale"
				}
				return k
			})
		}, c, []string{"neither LoRA weights", lora.WeightsFile}},
		{"embedding lora", func() string {
			return rewriteKeys(t, src, func(k string) string {
				if strings.HasSuffix(k, "text_model.layers.1.self_attn.q_proj.lora_magnitude_vector") {
					return lora.PeftPrefix + "model.text_model.embed_tokens.lora_embedding_A"
				}
				return k
			})
		}, c, []string{"embeddings"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.make()
			ad, err := lora.OpenAdapterDir(dir, tc.base)
			if err == nil {
				ad.Close()
				t.Fatal("accepted")
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines")
			}
			if !strings.Contains(msg, dir) {
				t.Errorf("error does not name %s", dir)
			}
			for _, s := range tc.wantSub {
				if !strings.Contains(msg, s) {
					t.Errorf("error lacks %q", s)
				}
			}
		})
	}
}

// TestMergeRefusals: merge never writes over its inputs or into a non-empty directory, and
// says so when base and adapter are given the wrong way round.
func TestMergeRefusals(t *testing.T) {
	fx := fixtureDir(t, "adapter-lora-bf16")
	src := filepath.Join(fx, "adapter")
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), []byte("x"), 0o644)
	for name, args := range map[string][3]string{
		"swapped":   {src, fx, filepath.Join(t.TempDir(), "out")},
		"over base": {fx, src, fx},
		"non-empty": {fx, src, full},
	} {
		_, err := lora.Merge(args[0], args[1], args[2], lora.MergeOptions{})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}
