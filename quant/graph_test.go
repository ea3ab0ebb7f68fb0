package quant_test

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/quant"
	"github.com/nlpodyssey/safetensors"
)

// TestDequantizeGraph rebuilds every fixture weight inside a graph from bitsandbytes' packed
// codes and scales (nested or not) and compares with bitsandbytes' dequantize_4bit, on the pure Go
// backend and on the configured one. On the pure Go backend the float32 result must be identical
// (tolerance 0: one float32 product per element from the same bits, and for nested scales one
// product and one sum, rounded separately as bitsandbytes does). XLA contracts the nested
// scale's product and sum into one fused multiply-add, which skips the product's rounding: a
// scale then moves by at most half an ulp of that product (a relative 3e-8 of it, large relative
// to the scale only where the offset cancels it), so there the bound is
// |code|·(ulp(nested code·nested absmax)/2 + ulp(scale)) per element. Non-nested weights are a
// single product everywhere: tolerance 0 on every backend. For bfloat16 weights the float32 values
// are rounded to nearest on the host before comparing, which is what bitsandbytes' kernel does.
func TestDequantizeGraph(t *testing.T) {
	fxs, err := fixtures.Find("quant")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=quant fixtures found under", fixtures.Roots())
	}
	pure, err := backend.New(backend.PureGo)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("go", func(t *testing.T) { checkDequantizeGraph(t, pure, fxs, false) })
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	if be.Name() != pure.Name() {
		t.Run(be.Name(), func(t *testing.T) { checkDequantizeGraph(t, be, fxs, true) })
	}
}

func checkDequantizeGraph(t *testing.T, be backends.Backend, fxs []fixtures.Fixture, fusedNested bool) {
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) {
			src := readRaw(t, filepath.Join(fx.Dir, "weights.safetensors"))
			want := readRaw(t, filepath.Join(fx.Dir, "expected.safetensors"))
			names := make([]string, 0, len(src))
			for n := range src {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, name := range names {
				x := src[name]
				got := dequantInGraph(t, be, want, name, x.shape)
				if x.dtype == safetensors.BF16 {
					got = quant.FromBFloat16(quant.BFloat16Bits(got))
				}
				ref := want[name+".dequant"].f32
				if fusedNested && want[name+".absmax"].u8 != nil {
					if err := withinFMA(got, ref, want, name, x.dtype == safetensors.BF16); err != nil {
						t.Errorf("%s: %v", name, err)
					}
				} else if err := sameValues(got, ref); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

func dequantInGraph(t *testing.T, be backends.Backend, want map[string]raw, name string, shape []int) []float32 {
	t.Helper()
	args := []any{
		tensors.FromFlatDataAndDimensions(want[name+".codes"].u8, want[name+".codes"].shape...),
		tensors.FromFlatDataAndDimensions(want["quant_map"].f32, 16),
	}
	am := want[name+".absmax"]
	nested := am.u8 != nil
	if nested {
		na := want[name+".nested_absmax"]
		args = append(args,
			tensors.FromFlatDataAndDimensions(am.u8, am.shape...),
			tensors.FromFlatDataAndDimensions(na.f32, na.shape...),
			tensors.FromFlatDataAndDimensions(want["nested_quant_map"].f32, 256),
			tensors.FromScalar(want[name+".offset"].f32[0]))
	} else {
		args = append(args, tensors.FromFlatDataAndDimensions(am.f32, am.shape...))
	}
	exec := MustNewExec(be, func(in []*Node) *Node {
		w := quant.GraphWeight{Codes: in[0], QuantMap: in[1], Absmax: in[2], Shape: shape, Blocksize: quant.Blocksize}
		if nested {
			w.NestedAbsmax, w.NestedQuantMap, w.NestedOffset = in[3], in[4], in[5]
		}
		return quant.DequantizeGraph(w)
	})
	out := exec.MustExec(args...)[0]
	if out.DType() != dtypes.Float32 {
		t.Fatalf("%s: dequantized dtype %s, want Float32", name, out.DType())
	}
	return tensors.MustCopyFlatData[float32](out)
}

// withinFMA checks the bound of a nested scale computed with one fused multiply-add instead of a
// rounded product and a sum (see TestDequantizeGraph): the scale moves by at most
// ulp(product)/2 + ulp(scale), the weight by |code|·that plus half an ulp of its own rounding
// (of a bfloat16 weight's rounding when it is one).
func withinFMA(got, want []float32, fx map[string]raw, name string, bf16 bool) error {
	nested := &quant.NestedAbsmax{Codes: fx[name+".absmax"].u8, Absmax: fx[name+".nested_absmax"].f32,
		Offset: fx[name+".offset"].f32[0], Blocksize: quant.NestedBlocksize}
	scales := nested.Scales()
	codes := fx[name+".codes"].u8
	var bad []string
	for i := range got {
		b := i / quant.Blocksize
		p := quant.DynamicCode[nested.Codes[b]] * nested.Absmax[b/quant.NestedBlocksize]
		c := codes[i/2] / 16
		if i%2 == 1 {
			c = codes[i/2] % 16
		}
		code := math.Abs(float64(fx["quant_map"].f32[c]))
		tol := code*(ulp32(p)/2+ulp32(scales[b])) + ulp32(want[i])/2
		if bf16 {
			tol += math.Abs(float64(want[i])) / 256
		}
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > tol || got[i] != got[i] {
			bad = append(bad, fmt.Sprintf("[%d] %g want %g (bound %.3g)", i, got[i], want[i], tol))
		}
	}
	return summarize(bad, len(got))
}

func ulp32(x float32) float64 {
	f := float32(math.Abs(float64(x)))
	return float64(math.Nextafter32(f, float32(math.Inf(1))) - f)
}
