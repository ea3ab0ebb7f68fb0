package lora_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/nlpodyssey/safetensors"
)

// adapterFixtures returns the kind=adapter fixtures (a base model, a PEFT-trained adapter in
// adapter/, inputs and PEFT's logits).
func adapterFixtures(t *testing.T) []fixtures.Fixture {
	t.Helper()
	fxs, err := fixtures.Find("adapter")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=adapter fixtures found under", fixtures.Roots())
	}
	return fxs
}

func fixtureInputs(t *testing.T, fx fixtures.Fixture) model.Inputs {
	t.Helper()
	raw, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "inputs.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := fixtures.ModelInputs(raw)
	if err != nil {
		t.Fatalf("%s/inputs.safetensors: %v", fx.Dir, err)
	}
	return in
}

// withAdapter loads base and, when adapterDir is set, attaches and loads the adapter there as
// every command does (OpenAdapterDir, then Attach).
func withAdapter(t *testing.T, base, adapterDir string) (*model.Model, *lora.Adapter) {
	t.Helper()
	m, err := model.Load(base, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if adapterDir == "" {
		return m, nil
	}
	ad, err := lora.OpenAdapterDir(adapterDir, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	a, err := ad.Attach(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, a
}

func runLogits(t *testing.T, be backends.Backend, m *model.Model, in model.Inputs) ([]float32, []int32) {
	t.Helper()
	in.Labels = nil
	b, err := model.NewBatch(m.Config, in)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Run(be, b)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](res.Logits), b.AttentionMask
}

// maxMaskedDiff is max |a − b| over positions whose attention mask is 1.
func maxMaskedDiff(a []float32, b []float64, mask []int32, vocab int) float64 {
	d := 0.0
	for i := range a {
		if mask[i/vocab] == 0 {
			continue
		}
		x := math.Abs(float64(a[i]) - b[i])
		if math.IsNaN(x) {
			return math.Inf(1)
		}
		d = math.Max(d, x)
	}
	return d
}

func widen(f []float32) []float64 {
	out := make([]float64, len(f))
	for i, x := range f {
		out[i] = float64(x)
	}
	return out
}

// TestAdapterFixtures: a PEFT-trained adapter imports and reproduces PEFT's logits; merged into
// a sharded checkpoint (f32) it loads with model.Load and gives the same logits as base + adapter;
// merged in bf16 every tensor is the bf16 rounding of the f32 merge.
func TestAdapterFixtures(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range adapterFixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			adapterDir := filepath.Join(fx.Dir, "adapter")
			in := fixtureInputs(t, fx)
			want, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "expected.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			m, _ := withAdapter(t, fx.Dir, adapterDir)
			vocab := m.Config.Text.VocabSize
			got, mask := runLogits(t, be, m, in)
			if len(got) != len(want["logits"].F) {
				t.Fatalf("logits: %d values, the fixture has %d", len(got), len(want["logits"].F))
			}
			d := maxMaskedDiff(got, want["logits"].F, mask, vocab)
			t.Logf("base + adapter vs PEFT: max |logit diff| %.3g", d)
			if d > fx.Meta.Atol {
				t.Errorf("base + adapter vs PEFT: max |logit diff| %.3g > %g", d, fx.Meta.Atol)
			}

			out := filepath.Join(t.TempDir(), "merged")
			res, err := lora.Merge(fx.Dir, adapterDir, out, lora.MergeOptions{DType: dtypes.Float32, MaxShardSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			checkLayout(t, out, res)
			merged, _ := withAdapter(t, out, "")
			gotMerged, _ := runLogits(t, be, merged, in)
			dm := maxMaskedDiff(gotMerged, widen(got), mask, vocab)
			dp := maxMaskedDiff(gotMerged, want["logits"].F, mask, vocab)
			t.Logf("merged (%d files, %d weights merged, %d replaced) vs base + adapter: %.3g; vs PEFT: %.3g", len(res.Files), res.Merged, res.Replaced, dm, dp)
			if dm > 1e-4 || dp > fx.Meta.Atol {
				t.Errorf("merged checkpoint: max |logit diff| %.3g vs base + adapter, %.3g vs PEFT", dm, dp)
			}

			out16 := filepath.Join(t.TempDir(), "merged-bf16")
			if _, err := lora.Merge(fx.Dir, adapterDir, out16, lora.MergeOptions{DType: dtypes.BFloat16}); err != nil {
				t.Fatal(err)
			}
			checkBF16(t, out, out16)
		})
	}
}

// checkLayout verifies the HF layout of a sharded merge: shards, an index naming every tensor
// once with the right total size, config.json and generation_config.json.
func checkLayout(t *testing.T, dir string, res *lora.MergeResult) {
	t.Helper()
	if len(res.Files) < 2 {
		t.Fatalf("expected several shards at a 64 KiB limit, got %v", res.Files)
	}
	var index struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	if index.Metadata["total_size"] != res.TotalSize {
		t.Errorf("index total_size %d, written %d", index.Metadata["total_size"], res.TotalSize)
	}
	sum := int64(0)
	for _, f := range res.Files {
		ck, err := model.OpenSafetensors(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ck.Names() {
			if index.WeightMap[n] != f {
				t.Errorf("%s is in %s, the index says %q", n, f, index.WeightMap[n])
			}
			v, _, _ := ck.Tensor(n)
			sum += int64(len(v.Data()))
		}
		ck.Close()
	}
	if sum != res.TotalSize {
		t.Errorf("shards hold %d bytes, index says %d", sum, res.TotalSize)
	}
	for _, f := range []string{"config.json", "generation_config.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func checkBF16(t *testing.T, f32Dir, bf16Dir string) {
	t.Helper()
	a, err := model.OpenCheckpoint(f32Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := model.OpenCheckpoint(bf16Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(a.Names()) != len(b.Names()) {
		t.Fatalf("bf16 merge has %d tensors, f32 merge %d", len(b.Names()), len(a.Names()))
	}
	for _, n := range a.Names() {
		va, _, _ := a.Tensor(n)
		vb, _, ok := b.Tensor(n)
		if !ok || vb.DType() != safetensors.BF16 {
			t.Fatalf("%s: missing or not BF16 in the bf16 merge", n)
		}
		ta, _ := model.ViewToTensor(va, dtypes.BFloat16)
		tb, _ := model.ViewToTensor(vb, dtypes.BFloat16)
		if !tensorsEqual(ta, tb) {
			t.Fatalf("%s: bf16 merge is not the bf16 rounding of the f32 merge", n)
		}
	}
	var cfg map[string]any
	data, _ := os.ReadFile(filepath.Join(bf16Dir, "config.json"))
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["dtype"] != "bfloat16" && cfg["torch_dtype"] != "bfloat16" {
		t.Errorf("bf16 merge: config.json dtype is %v / %v", cfg["dtype"], cfg["torch_dtype"])
	}
}

func tensorsEqual(a, b *tensors.Tensor) bool {
	if a.Shape().String() != b.Shape().String() {
		return false
	}
	eq := true
	_ = a.ConstBytes(func(x []byte) {
		_ = b.ConstBytes(func(y []byte) { eq = string(x) == string(y) })
	})
	return eq
}

// variableBits returns every adapter variable and modules_to_save tensor of m as raw float32 bits.
func variableBits(t *testing.T, m *model.Model, a *lora.Adapter, full []string) map[string][]uint32 {
	t.Helper()
	out := map[string][]uint32{}
	vars := a.Variables()
	for _, n := range full {
		vars[n] = m.Variable(n)
	}
	for n, v := range vars {
		val, err := v.Value()
		if err != nil {
			t.Fatal(err)
		}
		f := tensors.MustCopyFlatData[float32](val)
		bits := make([]uint32, len(f))
		for i, x := range f {
			bits[i] = math.Float32bits(x)
		}
		out[n] = bits
	}
	return out
}

func sameBits(t *testing.T, what string, got, want map[string][]uint32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tensors, want %d", what, len(got), len(want))
	}
	for n, w := range want {
		g := got[n]
		if len(g) != len(w) {
			t.Fatalf("%s: %s has %d values, want %d", what, n, len(g), len(w))
		}
		for i := range w {
			if g[i] != w[i] {
				t.Fatalf("%s: %s[%d] = %08x, want %08x", what, n, i, g[i], w[i])
			}
		}
	}
}

// rewriteKeys writes a copy of an adapter directory whose weight keys are renamed by f (""
// drops the tensor).
func rewriteKeys(t *testing.T, src string, f func(string) string) string {
	t.Helper()
	dst := t.TempDir()
	ck, err := model.OpenSafetensors(filepath.Join(src, lora.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	views := map[string]safetensors.TensorView{}
	for _, n := range ck.Names() {
		v, _, _ := ck.Tensor(n)
		if k := f(n); k != "" {
			views[k] = v
		}
	}
	if err := model.WriteSafetensors(filepath.Join(dst, lora.WeightsFile), views, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(src, lora.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, lora.ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// infix inserts PEFT's in-memory adapter name, as state dicts taken from a live PeftModel
// spell keys: .lora_A.default.weight, .lora_magnitude_vector.default.weight,
// <module>.modules_to_save.default.<tensor>.
func infix(key string) string {
	for _, k := range []string{".lora_A.", ".lora_B."} {
		if strings.Contains(key, k) {
			return strings.Replace(key, k, k+"default.", 1)
		}
	}
	if strings.HasSuffix(key, ".lora_magnitude_vector") {
		return key + ".default.weight"
	}
	if strings.Contains(key, ".connector.") {
		return strings.Replace(key, ".connector.", ".connector.modules_to_save.default.", 1)
	}
	return key
}

// TestKeyVariants: the key spellings found in the wild (no base_model.model. prefix, an
// adapter-name infix, both) import to the same values, bit for bit, as PEFT's own; the import
// command's conversion writes back PEFT's exact keys and bytes.
func TestKeyVariants(t *testing.T) {
	variants := map[string]func(string) string{
		"no prefix":          func(k string) string { return strings.TrimPrefix(k, lora.PeftPrefix) },
		"infix":              infix,
		"no prefix + infix":  func(k string) string { return infix(strings.TrimPrefix(k, lora.PeftPrefix)) },
		"PEFT (unchanged)":   func(k string) string { return k },
		"lora_A.other_name.": func(k string) string { return strings.Replace(k, ".lora_A.", ".lora_A.my-adapter_2.", 1) },
	}
	for _, fx := range adapterFixtures(t) {
		t.Run(fx.Name, func(t *testing.T) {
			src := filepath.Join(fx.Dir, "adapter")
			m, a := withAdapter(t, fx.Dir, src)
			full, err := lora.ModulesToSave(m.Config, a.Config.ModulesToSave)
			if err != nil {
				t.Fatal(err)
			}
			var fullNames []string
			for _, p := range m.Config.Params() {
				for _, f := range full {
					if strings.HasPrefix(p.Name, f+".") {
						fullNames = append(fullNames, p.Name)
					}
				}
			}
			want := variableBits(t, m, a, fullNames)
			names := make([]string, 0, len(variants))
			for n := range variants {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, name := range names {
				dir := rewriteKeys(t, src, variants[name])
				ad, err := lora.OpenAdapterDir(dir, m.Config)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				canonDir := t.TempDir()
				if err := ad.WriteCanonical(canonDir, dtypes.InvalidDType); err != nil {
					t.Fatal(err)
				}
				t.Logf("%-20s read as %q", name, ad.Variant)
				ad.Close()
				m2, a2 := withAdapter(t, fx.Dir, dir)
				sameBits(t, name, variableBits(t, m2, a2, fullNames), want)
				sameFile(t, filepath.Join(src, lora.WeightsFile), filepath.Join(canonDir, lora.WeightsFile))
			}
		})
	}
}

// sameFile checks that two safetensors files hold the same keys with the same dtypes, shapes
// and bytes.
func sameFile(t *testing.T, a, b string) {
	t.Helper()
	ca, err := model.OpenSafetensors(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := model.OpenSafetensors(b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if strings.Join(ca.Names(), ",") != strings.Join(cb.Names(), ",") {
		t.Fatalf("%s and %s hold different keys", a, b)
	}
	for _, n := range ca.Names() {
		va, _, _ := ca.Tensor(n)
		vb, _, _ := cb.Tensor(n)
		if va.DType() != vb.DType() || string(va.Data()) != string(vb.Data()) {
			t.Fatalf("%s differs between %s and %s", n, a, b)
		}
	}
}
