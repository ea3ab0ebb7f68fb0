package model

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/idefics2/idefics2/quant"
	"github.com/nlpodyssey/safetensors"
)

// quantStatePrefix starts the name of the tensor in which transformers keeps a 4-bit weight's
// non-tensor state (JSON bytes): "<module>.weight.quant_state.bitsandbytes__nf4".
const quantStatePrefix = ".quant_state.bitsandbytes__"

// Prequantized says whether ck holds weights saved in 4 bits by transformers (any
// ".quant_state.bitsandbytes__*" tensor).
func (ck *Checkpoint) Prequantized() bool {
	for n := range ck.tensors {
		if strings.Contains(n, quantStatePrefix) {
			return true
		}
	}
	return false
}

// quantStateJSON is the packed state transformers writes (bitsandbytes' QuantState.as_dict).
type quantStateJSON struct {
	QuantType       string   `json:"quant_type"`
	Blocksize       int      `json:"blocksize"`
	DType           string   `json:"dtype"`
	Shape           []int    `json:"shape"`
	NestedBlocksize int      `json:"nested_blocksize"`
	NestedDType     string   `json:"nested_dtype"`
	NestedOffset    *float64 `json:"nested_offset"`
}

// loadWeights4bit is LoadWeights when some Linear weights are (or become) 4-bit: weights saved in
// 4 bits load as they are; with m.Quant set, the others among QuantizedLinears are quantized
// here, one tensor at a time from the mapped file (the host never holds the model in full
// precision); everything else loads as LoadWeights does.
func (m *Model) loadWeights4bit(ck *Checkpoint) error {
	quantized := map[string]bool{}
	for _, p := range m.Config.QuantizedLinears() {
		quantized[p.Name] = true
	}
	toQuantize := m.Quant.Quantizes(m.Config)
	var problems []string
	expected := map[string]bool{}
	for _, p := range m.Config.Params() {
		expected[p.Name] = true
		view, file, ok := ck.Tensor(p.Name)
		if !ok {
			problems = append(problems, fmt.Sprintf("missing tensor %s %v", p.Name, p.Shape))
			continue
		}
		if quantized[p.Name] && (view.DType() == safetensors.U8 || hasQuantState(ck, p.Name)) {
			for _, n := range ck.Names() {
				if strings.HasPrefix(n, p.Name+".") {
					expected[n] = true
				}
			}
			continue // checked when loaded: its problems are specific enough to stop at the first
		}
		if got := viewShape(view); !slices.Equal(got, p.Shape) {
			problems = append(problems, fmt.Sprintf("tensor %s in %s has shape %v, the config expects %v", p.Name, file, got, p.Shape))
		}
	}
	if err := mismatch(ck, expected, problems); err != nil {
		return err
	}
	for _, p := range m.Config.Params() {
		view, file, _ := ck.Tensor(p.Name)
		switch {
		case quantized[p.Name] && (view.DType() == safetensors.U8 || hasQuantState(ck, p.Name)):
			packed, stored, err := readPacked(ck, p)
			if err != nil {
				return err
			}
			m.SetPacked(p.Name, packed, stored)
		case toQuantize[p.Name] && m.Quant.Enabled():
			vals, err := viewFloats(view, m.DType)
			if err != nil {
				return fmt.Errorf("tensor %s in %s: %w", p.Name, file, err)
			}
			packed, err := quant.Quantize4(vals, p.Shape, m.Quant.Type, m.Quant.DoubleQuant)
			if err != nil {
				return fmt.Errorf("tensor %s in %s: %w", p.Name, file, err)
			}
			m.SetPacked(p.Name, packed, m.DType)
		default:
			t, err := ViewToTensor(view, m.DType)
			if err != nil {
				return fmt.Errorf("tensor %s in %s: %w", p.Name, file, err)
			}
			scope, v := VariableScope(p.Name)
			if existing := m.Ctx.GetVariableByScopeAndName(scope, v); existing != nil {
				if err := existing.SetValue(t); err != nil {
					return fmt.Errorf("tensor %s: %w", p.Name, err)
				}
			} else {
				m.Ctx.InAbsPath(scope).VariableWithValue(v, t).SetTrainable(false)
			}
		}
		ck.Release(p.Name)
	}
	return nil
}

func hasQuantState(ck *Checkpoint, name string) bool {
	for _, n := range ck.Names() {
		if strings.HasPrefix(n, name+quantStatePrefix) || n == name+"."+qAbsmax {
			return true
		}
	}
	return false
}

func viewShape(v safetensors.TensorView) []int {
	out := make([]int, len(v.Shape()))
	for i, d := range v.Shape() {
		out[i] = int(d)
	}
	return out
}

// viewFloats decodes a floating point tensor as the model holds it in dtype (bfloat16 values
// rounded to nearest, as transformers casts the checkpoint to the model's dtype before quantizing),
// widened to float32.
func viewFloats(v safetensors.TensorView, dtype dtypes.DType) ([]float32, error) {
	t, err := ViewToTensor(v, dtype)
	if err != nil {
		return nil, err
	}
	defer t.FinalizeAll()
	var out []float32
	t.MustConstFlatData(func(flat any) {
		switch f := flat.(type) {
		case []float32:
			out = append([]float32(nil), f...)
		case []bfloat16.BFloat16:
			out = make([]float32, len(f))
			for i, x := range f {
				out[i] = x.Float32()
			}
		}
	})
	if out == nil {
		return nil, fmt.Errorf("cannot quantize from %s", dtype)
	}
	return out, nil
}

// readPacked reads a Linear weight saved in 4 bits by transformers: the packed uint8 weight, its
// .absmax and .quant_map (and .nested_absmax, .nested_quant_map with double quantization), and
// the JSON of .quant_state.bitsandbytes__<type>. A missing piece is an error naming the tensor.
func readPacked(ck *Checkpoint, p Param) (*quant.Packed, dtypes.DType, error) {
	view, file, _ := ck.Tensor(p.Name)
	fail := func(format string, args ...any) (*quant.Packed, dtypes.DType, error) {
		return nil, 0, fmt.Errorf("4-bit weight %s in %s: %s", p.Name, file, fmt.Sprintf(format, args...))
	}
	var stateName string
	for _, n := range ck.Names() {
		if strings.HasPrefix(n, p.Name+quantStatePrefix) {
			stateName = n
		}
	}
	if stateName == "" {
		return fail("missing quant-state tensor %s%snf4 (or fp4)", p.Name, quantStatePrefix)
	}
	typ, err := quant.ParseType(strings.TrimPrefix(stateName, p.Name+quantStatePrefix))
	if err != nil {
		return fail("tensor %s: %v", stateName, err)
	}
	sv, _, _ := ck.Tensor(stateName)
	var st quantStateJSON
	if err := json.Unmarshal(sv.Data(), &st); err != nil {
		return fail("tensor %s does not hold bitsandbytes' quant-state JSON: %v", stateName, err)
	}
	if st.QuantType != "" && st.QuantType != string(typ) {
		return fail("tensor %s says quant_type %q", stateName, st.QuantType)
	}
	if !slices.Equal(st.Shape, p.Shape) {
		return fail("quant state says shape %v, the config expects %v", st.Shape, p.Shape)
	}
	if view.DType() != safetensors.U8 {
		return fail("packed weight has dtype %s, want U8 (bnb_4bit_quant_storage other than uint8 is not supported)", view.DType())
	}
	stored, err := storedDType(st.DType)
	if err != nil {
		return fail("%v", err)
	}
	get := func(suffix string, dt safetensors.DType) (safetensors.TensorView, error) {
		v, _, ok := ck.Tensor(p.Name + "." + suffix)
		if !ok {
			return v, fmt.Errorf("missing quant-state tensor %s.%s", p.Name, suffix)
		}
		if v.DType() != dt {
			return v, fmt.Errorf("quant-state tensor %s.%s has dtype %s, want %s", p.Name, suffix, v.DType(), dt)
		}
		return v, nil
	}
	packed := &quant.Packed{Type: typ, Blocksize: st.Blocksize, Shape: p.Shape, Codes: append([]uint8(nil), view.Data()...)}
	qm, err := get(qQuantMap, safetensors.F32)
	if err != nil {
		return fail("%v", err)
	}
	code := typ.Code()
	if got := f32s(qm.Data()); !sameValues(got, code[:]) {
		return fail("quant_map %v is not bitsandbytes' %s table", got, typ)
	}
	if st.NestedOffset == nil {
		am, err := get(qAbsmax, safetensors.F32)
		if err != nil {
			return fail("%v", err)
		}
		packed.Absmax = f32s(am.Data())
	} else {
		am, err := get(qAbsmax, safetensors.U8)
		if err != nil {
			return fail("%v", err)
		}
		na, err := get(qNestedAbsmax, safetensors.F32)
		if err != nil {
			return fail("%v", err)
		}
		nq, err := get(qNestedQuantMap, safetensors.F32)
		if err != nil {
			return fail("%v", err)
		}
		if got := f32s(nq.Data()); !sameValues(got, quant.DynamicCode[:]) {
			return fail("nested_quant_map is not bitsandbytes' 8-bit dynamic map")
		}
		packed.Nested = &quant.NestedAbsmax{Codes: append([]uint8(nil), am.Data()...), Absmax: f32s(na.Data()),
			Offset: float32(*st.NestedOffset), Blocksize: st.NestedBlocksize}
	}
	if packed.Blocksize != quant.Blocksize || (packed.Nested != nil && packed.Nested.Blocksize != quant.NestedBlocksize) {
		return fail("blocksize %d (nested %d): only bitsandbytes' defaults 64 and 256 are supported", st.Blocksize, st.NestedBlocksize)
	}
	if err := packed.Check(); err != nil {
		return fail("%v", err)
	}
	return packed, stored, nil
}

// storedDType maps the quant state's dtype (the weight's dtype when it was quantized) to the
// dtype dequantization rounds to. float16 has no pure Go backend support: those weights are used
// at float32 precision (one rounding fewer than bitsandbytes).
func storedDType(s string) (dtypes.DType, error) {
	switch s {
	case "float32", "float16", "":
		return dtypes.Float32, nil
	case "bfloat16":
		return dtypes.BFloat16, nil
	}
	return 0, fmt.Errorf("quant state dtype %q is not float32, bfloat16 or float16", s)
}

func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func sameValues(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// declareShapes4bit is DeclareShapes with the Linear weights of QuantizedLinears in 4 bits.
func (m *Model) declareShapes4bit() {
	quantized := m.Quant.Quantizes(m.Config)
	for _, p := range m.Config.Params() {
		if quantized[p.Name] {
			m.declarePacked(p, m.Quant)
			continue
		}
		scope, v := VariableScope(p.Name)
		if m.Ctx.GetVariableByScopeAndName(scope, v) == nil {
			m.Ctx.InAbsPath(scope).VariableWithShape(v, shapes.Make(m.DType, p.Shape...)).SetTrainable(false)
		}
	}
}
