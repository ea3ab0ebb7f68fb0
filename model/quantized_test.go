package model_test

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

type qmodelMeta struct {
	Quantization struct {
		QuantType   string `json:"quant_type"`
		DoubleQuant bool   `json:"double_quant"`
	} `json:"quantization"`
}

// TestQuantizedParity runs every kind=qmodel fixture: transformers' 4-bit Idefics2 (bitsandbytes,
// float32 compute) against ours, twice: quantizing the float32 checkpoint on load, and loading
// the 4-bit checkpoint transformers saved (prequantized/) as it is. The packed weights and their
// state must be bit-identical between the two loads (the quantization itself is checked against
// bitsandbytes by the quant package's fixtures), and each model's outputs must match the
// reference within the fixture's tolerance (1e-4 absolute and relative, as for kind=model: the
// dequantized weights are identical, so what is left is float32 summation order).
func TestQuantizedParity(t *testing.T) {
	fxs, err := fixtures.Find("qmodel")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=qmodel fixtures found under", fixtures.Roots())
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) {
			var meta qmodelMeta
			data, err := os.ReadFile(filepath.Join(fx.Dir, "meta.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &meta); err != nil {
				t.Fatalf("%s/meta.json: %v", fx.Dir, err)
			}
			q, err := model.ParseQuantization(meta.Quantization.QuantType, meta.Quantization.DoubleQuant)
			if err != nil {
				t.Fatalf("%s/meta.json: %v", fx.Dir, err)
			}
			onLoad := loadQuantized(t, fx.Dir, q)
			pre := loadQuantized(t, filepath.Join(fx.Dir, "prequantized"), model.Quantization{})
			comparePacked(t, onLoad, pre)
			t.Run("quantize-on-load", func(t *testing.T) { compareOutputs(t, be, fx, onLoad) })
			t.Run("prequantized", func(t *testing.T) { compareOutputs(t, be, fx, pre) })
		})
	}
}

func loadQuantized(t *testing.T, dir string, q model.Quantization) *model.Model {
	t.Helper()
	cfg, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := model.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	m := model.New(cfg, dtypes.Float32)
	m.Quant = q
	if err := m.LoadWeights(ck); err != nil {
		t.Fatal(err)
	}
	return m
}

// comparePacked checks that both models hold the same variables with the same bits.
func comparePacked(t *testing.T, a, b *model.Model) {
	t.Helper()
	packed := 0
	for _, p := range a.Config.QuantizedLinears() {
		scope, _ := model.VariableScope(p.Name)
		for _, sv := range [][2]string{{scope, "weight"}, {scope + "/weight", "absmax"}, {scope + "/weight", "nested_absmax"},
			{scope + "/weight", "nested_offset"}, {scope + "/weight", "quant_map"}} {
			va, vb := a.Ctx.GetVariableByScopeAndName(sv[0], sv[1]), b.Ctx.GetVariableByScopeAndName(sv[0], sv[1])
			if (va == nil) != (vb == nil) {
				t.Fatalf("%s/%s: present in one load only", sv[0], sv[1])
			}
			if va == nil {
				continue
			}
			ta, tb := va.MustValue(), vb.MustValue()
			if !ta.Shape().Equal(tb.Shape()) {
				t.Fatalf("%s/%s: shapes %s and %s", sv[0], sv[1], ta.Shape(), tb.Shape())
			}
			var ba, bb []byte
			ta.ConstBytes(func(x []byte) { ba = slices.Clone(x) })
			tb.ConstBytes(func(x []byte) { bb = slices.Clone(x) })
			if !slices.Equal(ba, bb) {
				t.Errorf("%s/%s: quantizing on load differs from the checkpoint transformers saved", sv[0], sv[1])
			}
			if sv[1] == "weight" {
				if ta.DType() != dtypes.Uint8 {
					t.Errorf("%s is %s, not packed", p.Name, ta.DType())
				}
				packed++
			}
		}
	}
	if packed != len(a.Config.QuantizedLinears()) {
		t.Errorf("%d packed weights, want %d", packed, len(a.Config.QuantizedLinears()))
	}
	if v := a.Variable("lm_head.weight"); v == nil || v.MustValue().DType() != dtypes.Float32 {
		t.Errorf("lm_head.weight must stay in the compute dtype")
	}
}

func compareOutputs(t *testing.T, be backends.Backend, fx fixtures.Fixture, m *model.Model) {
	raw, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "inputs.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := inputsFromFixture(raw)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := model.NewBatch(m.Config, in)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Run(be, batch)
	if err != nil {
		t.Fatal(err)
	}
	compare := func(name string, got *tensors.Tensor, mask func(i int) bool) {
		w := want[name]
		if got == nil || !slices.Equal(got.Shape().Dimensions, w.Shape) {
			t.Fatalf("%s: missing or shape mismatch (reference %v)", name, w.Shape)
		}
		g := tensors.MustCopyFlatData[float32](got)
		for i := range g {
			if mask != nil && !mask(i) {
				g[i] = float32(w.F[i])
			}
		}
		maxAbs, ok, worst := fixtures.MaxDiff(g, w.F, fx.Meta.Atol, fx.Meta.Rtol)
		t.Logf("%-26s max |diff| %.3g", name, maxAbs)
		if !ok {
			t.Errorf("%s: max |diff| %.3g at %d (got %g, reference %g) exceeds atol %g + rtol %g", name, maxAbs, worst, g[worst], w.F[worst], fx.Meta.Atol, fx.Meta.Rtol)
		}
	}
	compare("vision_last_hidden_state", res.Vision, nil)
	compare("image_hidden_states", res.ImageHidden, nil)
	vocab := m.Config.Text.VocabSize
	compare("logits", res.Logits, func(i int) bool { return batch.AttentionMask[i/vocab] != 0 })
	if res.Loss != nil {
		compare("loss", res.Loss, nil)
	}
}

// TestPrequantizedErrors: a 4-bit checkpoint with a quant-state tensor missing, or of a quant
// type bitsandbytes does not have, is refused with one line naming the tensor.
func TestPrequantizedErrors(t *testing.T) {
	fxs, err := fixtures.Find("qmodel")
	if err != nil || len(fxs) == 0 {
		t.Fatal("no kind=qmodel fixtures found", err)
	}
	var fx fixtures.Fixture
	for _, f := range fxs {
		if strings.Contains(f.Name, "nf4-double") {
			fx = f
		}
	}
	if fx.Dir == "" {
		t.Fatal("the cases need the qmodel-nf4-double fixture")
	}
	dir := filepath.Join(fx.Dir, "prequantized")
	const module = "model.text_model.layers.1.mlp.down_proj.weight"
	for _, c := range []struct{ from, to, want string }{
		{module + ".absmax", module + ".absmaX", "missing quant-state tensor " + module + ".absmax"},
		{module + ".quant_state.bitsandbytes__nf4", module + ".quant_state.bitsandbytes__nf5", `unknown 4-bit quant type "nf5"`},
		{module + ".quant_map", module + ".quant_maQ", "missing quant-state tensor " + module + ".quant_map"},
		{module + ".nested_absmax", module + ".nested_absmaX", "missing quant-state tensor " + module + ".nested_absmax"},
	} {
		tmp := t.TempDir()
		renameTensor(t, dir, tmp, c.from, c.to)
		cfg, err := model.LoadConfig(filepath.Join(tmp, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		ck, err := model.OpenCheckpoint(tmp)
		if err != nil {
			t.Fatal(err)
		}
		err = model.New(cfg, dtypes.Float32).LoadWeights(ck)
		ck.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("renaming %s: error %v, want one line containing %q", c.from, err, c.want)
		}
	}
}

// renameTensor copies a checkpoint directory, renaming one tensor in the safetensors header
// (same length, so the data offsets stay valid).
func renameTensor(t *testing.T, src, dst, from, to string) {
	t.Helper()
	for _, f := range []string{"config.json", "model.safetensors"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "model.safetensors" {
			n := int(binary.LittleEndian.Uint64(data))
			header := string(data[8 : 8+n])
			if len(from) != len(to) || !strings.Contains(header, `"`+from+`"`) {
				t.Fatalf("cannot rename %s to %s in %s", from, to, f)
			}
			data = append(append(append([]byte(nil), data[:8]...), strings.Replace(header, `"`+from+`"`, `"`+to+`"`, 1)...), data[8+n:]...)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
