package model

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/quant"
)

// Quantization is how the frozen Linear weights are kept on the device: in the compute dtype
// (Type ""), or in bitsandbytes' 4-bit format as transformers' BitsAndBytesConfig(load_in_4bit=
// True, bnb_4bit_quant_type=Type, bnb_4bit_use_double_quant=DoubleQuant) stores them (QLoRA).
type Quantization struct {
	Type        quant.Type
	DoubleQuant bool
	// Skip lists module paths ("model.connector") whose Linears stay in the compute dtype, as
	// llm_int8_skip_modules does: the fully trained ones.
	Skip []string
}

// ParseQuantization reads the config values: kind is nf4, fp4 or none ("" = none).
func ParseQuantization(kind string, doubleQuant bool) (Quantization, error) {
	if kind == "" || kind == "none" {
		return Quantization{}, nil
	}
	t, err := quant.ParseType(kind)
	if err != nil {
		return Quantization{}, fmt.Errorf("model.quantization: %q is not nf4, fp4 or none", kind)
	}
	return Quantization{Type: t, DoubleQuant: doubleQuant}, nil
}

// Enabled says whether weights are stored in 4 bits.
func (q Quantization) Enabled() bool { return q.Type != "" }

// QuantizedLinears lists the weights 4-bit loading converts (before Quantization.Skip): every
// Linear (nn.Linear) of the model except the output head. transformers skips what get_keys_to_not_convert returns, which
// for Idefics2 is lm_head (the output embedding and the last parameter; the tied-weight keys name
// lm_head and embed_tokens, an Embedding, never converted); convolutions, embeddings, norms and
// the perceiver latents are not Linear layers.
func (c Config) QuantizedLinears() []Param {
	var out []Param
	for _, p := range c.Params() {
		if len(p.Shape) != 2 || !strings.HasSuffix(p.Name, ".weight") || p.Name == "lm_head.weight" ||
			strings.HasSuffix(p.Name, "embed_tokens.weight") || strings.HasSuffix(p.Name, "position_embedding.weight") {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Names of the quantization state next to a packed weight, in the scope "<module>/weight", as
// transformers names the tensors "<module>.weight.<name>".
const (
	qAbsmax         = "absmax"
	qQuantMap       = "quant_map"
	qNestedAbsmax   = "nested_absmax"
	qNestedQuantMap = "nested_quant_map"
	qNestedOffset   = "nested_offset"
	// Context parameters at the module's scope: the weight's shape and the dtype it was
	// quantized from (what bitsandbytes' dequantization returns before the Linear's cast).
	paramQuantShape = "quant_shape"
	paramQuantDType = "quant_dtype"
)

// Quantizes lists the weights q converts when quantizing on load (none when q is not enabled).
func (q Quantization) Quantizes(c Config) map[string]bool {
	out := map[string]bool{}
	if !q.Enabled() {
		return out
	}
	for _, p := range c.QuantizedLinears() {
		skip := false
		for _, s := range q.Skip {
			skip = skip || strings.HasPrefix(p.Name, s+".")
		}
		if !skip {
			out[p.Name] = true
		}
	}
	return out
}

// SetPacked stores a packed weight as the module's variables: "weight" (uint8 codes) and its
// quantization state.
func (m *Model) SetPacked(name string, p *quant.Packed, stored dtypes.DType) {
	scope, _ := VariableScope(name)
	mctx := m.Ctx.InAbsPath(scope)
	set := func(ctx *context.Context, v string, t *tensors.Tensor) {
		if existing := ctx.GetVariableByScopeAndName(ctx.Scope(), v); existing != nil {
			if err := existing.SetValue(t); err == nil {
				return
			}
			_ = ctx.DeleteVariable(ctx.Scope(), v)
		}
		ctx.VariableWithValue(v, t).SetTrainable(false)
	}
	set(mctx, "weight", tensors.FromFlatDataAndDimensions(p.Codes, len(p.Codes)))
	wctx := mctx.In("weight")
	code := p.Type.Code()
	set(wctx, qQuantMap, tensors.FromFlatDataAndDimensions(code[:], 16))
	if p.Nested == nil {
		set(wctx, qAbsmax, tensors.FromFlatDataAndDimensions(p.Absmax, len(p.Absmax)))
	} else {
		n := p.Nested
		set(wctx, qAbsmax, tensors.FromFlatDataAndDimensions(n.Codes, len(n.Codes)))
		set(wctx, qNestedAbsmax, tensors.FromFlatDataAndDimensions(n.Absmax, len(n.Absmax)))
		set(wctx, qNestedQuantMap, tensors.FromFlatDataAndDimensions(quant.DynamicCode[:], 256))
		set(wctx, qNestedOffset, tensors.FromScalar(n.Offset))
	}
	mctx.SetParam(paramQuantShape, append([]int(nil), p.Shape...))
	mctx.SetParam(paramQuantDType, stored)
}

// declarePacked creates the variables of a packed weight with shapes only (compile-only runs).
func (m *Model) declarePacked(p Param, q Quantization) {
	scope, _ := VariableScope(p.Name)
	mctx := m.Ctx.InAbsPath(scope)
	n := p.Size()
	blocks := (n + quant.Blocksize - 1) / quant.Blocksize
	decl := func(ctx *context.Context, v string, s shapes.Shape) {
		if ctx.GetVariableByScopeAndName(ctx.Scope(), v) == nil {
			ctx.VariableWithShape(v, s).SetTrainable(false)
		}
	}
	decl(mctx, "weight", shapes.Make(dtypes.Uint8, (n+1)/2))
	wctx := mctx.In("weight")
	decl(wctx, qQuantMap, shapes.Make(dtypes.Float32, 16))
	if q.DoubleQuant {
		decl(wctx, qAbsmax, shapes.Make(dtypes.Uint8, blocks))
		decl(wctx, qNestedAbsmax, shapes.Make(dtypes.Float32, (blocks+quant.NestedBlocksize-1)/quant.NestedBlocksize))
		decl(wctx, qNestedQuantMap, shapes.Make(dtypes.Float32, 256))
		decl(wctx, qNestedOffset, shapes.Make(dtypes.Float32))
	} else {
		decl(wctx, qAbsmax, shapes.Make(dtypes.Float32, blocks))
	}
	mctx.SetParam(paramQuantShape, append([]int(nil), p.Shape...))
	mctx.SetParam(paramQuantDType, m.DType)
}

// linearWeight is the weight of the Linear at ctx's scope in the compute dtype: the variable
// itself, or, for a 4-bit weight, its dequantization in the graph. The dequantized weight is a
// pure function of the packed variables, so a recomputing backward pass rebuilds it instead of
// keeping it.
func (b *builder) linearWeight(ctx *context.Context, g *Graph) *Node {
	v := ctx.GetVariableByScopeAndName(ctx.Scope(), "weight")
	if v == nil || v.Shape().DType != dtypes.Uint8 {
		return b.weight(ctx, g, "weight")
	}
	wscope := ctx.In("weight").Scope()
	get := func(name string) *Node {
		qv := ctx.GetVariableByScopeAndName(wscope, name)
		if qv == nil {
			return nil
		}
		return qv.ValueGraph(g)
	}
	shape := context.GetParamOr(ctx, paramQuantShape, []int(nil))
	stored := context.GetParamOr(ctx, paramQuantDType, dtypes.Float32)
	if shape == nil || get(qAbsmax) == nil || get(qQuantMap) == nil {
		panic(fmt.Sprintf("model: %s is a packed 4-bit weight without its quantization state", TensorName(ctx.Scope(), "weight")))
	}
	w := quant.GraphWeight{
		Codes: v.ValueGraph(g), QuantMap: get(qQuantMap), Absmax: get(qAbsmax),
		NestedAbsmax: get(qNestedAbsmax), NestedQuantMap: get(qNestedQuantMap), NestedOffset: get(qNestedOffset),
		Shape: shape, Blocksize: quant.Blocksize,
	}
	return quant.CastWeight(quant.DequantizeGraph(w), stored, b.dtype)
}

// DequantizedWeight returns the values a packed 4-bit weight stands for (bitsandbytes'
// dequantization, rounded to the dtype it was quantized from), read from the variables on the
// host, or ok=false when name is not a packed weight.
func (m *Model) DequantizedWeight(name string) (values []float32, ok bool, err error) {
	scope, _ := VariableScope(name)
	mctx := m.Ctx.InAbsPath(scope)
	v := mctx.GetVariableByScopeAndName(scope, "weight")
	if v == nil || v.Shape().DType != dtypes.Uint8 {
		return nil, false, nil
	}
	wscope := mctx.In("weight").Scope()
	read := func(n string) (*tensors.Tensor, error) {
		qv := mctx.GetVariableByScopeAndName(wscope, n)
		if qv == nil {
			return nil, nil
		}
		return qv.Value()
	}
	shape := context.GetParamOr(mctx, paramQuantShape, []int(nil))
	stored := context.GetParamOr(mctx, paramQuantDType, dtypes.Float32)
	codes, err := v.Value()
	if err != nil {
		return nil, true, err
	}
	p := &quant.Packed{Blocksize: quant.Blocksize, Shape: shape, Codes: tensors.MustCopyFlatData[uint8](codes)}
	qm, err := read(qQuantMap)
	if err != nil || qm == nil {
		return nil, true, fmt.Errorf("model: %s has no quant_map (%v)", name, err)
	}
	code := tensors.MustCopyFlatData[float32](qm)
	switch {
	case sameValues(code, nf4Table()):
		p.Type = quant.NF4
	case sameValues(code, fp4Table()):
		p.Type = quant.FP4
	default:
		return nil, true, fmt.Errorf("model: %s: quant_map is neither bitsandbytes' nf4 nor fp4 table", name)
	}
	am, err := read(qAbsmax)
	if err != nil || am == nil {
		return nil, true, fmt.Errorf("model: %s has no absmax (%v)", name, err)
	}
	if am.DType() == dtypes.Float32 {
		p.Absmax = tensors.MustCopyFlatData[float32](am)
	} else {
		na, err1 := read(qNestedAbsmax)
		off, err2 := read(qNestedOffset)
		if err1 != nil || err2 != nil || na == nil || off == nil {
			return nil, true, fmt.Errorf("model: %s has uint8 absmax without nested_absmax and nested_offset", name)
		}
		p.Nested = &quant.NestedAbsmax{Codes: tensors.MustCopyFlatData[uint8](am), Absmax: tensors.MustCopyFlatData[float32](na),
			Offset: tensors.MustCopyFlatData[float32](off)[0], Blocksize: quant.NestedBlocksize}
	}
	if err := p.Check(); err != nil {
		return nil, true, fmt.Errorf("model: %s: %w", name, err)
	}
	values = p.Dequantize4()
	if stored == dtypes.BFloat16 {
		values = quant.FromBFloat16(quant.BFloat16Bits(values))
	}
	return values, true, nil
}

func nf4Table() []float32 { c := quant.NF4.Code(); return c[:] }
func fp4Table() []float32 { c := quant.FP4.Code(); return c[:] }
