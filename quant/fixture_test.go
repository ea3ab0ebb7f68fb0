package quant_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/quant"
	"github.com/nlpodyssey/safetensors"
)

// raw is a fixture tensor with its exact bits: float32 values (bfloat16 widened exactly) or bytes.
type raw struct {
	shape []int
	dtype safetensors.DType
	f32   []float32
	u8    []uint8
}

func readRaw(t *testing.T, path string) map[string]raw {
	t.Helper()
	ck, err := model.OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	out := map[string]raw{}
	for _, name := range ck.Names() {
		v, _, _ := ck.Tensor(name)
		r := raw{dtype: v.DType()}
		for _, d := range v.Shape() {
			r.shape = append(r.shape, int(d))
		}
		data := v.Data()
		switch v.DType() {
		case safetensors.F32:
			r.f32 = make([]float32, len(data)/4)
			for i := range r.f32 {
				r.f32[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			}
		case safetensors.BF16:
			r.f32 = make([]float32, len(data)/2)
			for i := range r.f32 {
				r.f32[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(data[2*i:])) << 16)
			}
		case safetensors.U8:
			r.u8 = append([]uint8(nil), data...)
		default:
			t.Fatalf("%s: %s has dtype %s, not F32, BF16 or U8", path, name, v.DType())
		}
		out[name] = r
	}
	return out
}

type quantJSON struct {
	QuantType          string `json:"quant_type"`
	Blocksize          int    `json:"blocksize"`
	CompressStatistics bool   `json:"compress_statistics"`
	Bitsandbytes       string `json:"bitsandbytes"`
}

// TestQuantFixtures quantizes every source tensor of every kind=quant fixture and compares with
// bitsandbytes' own output: packed codes, absmax (or its 8-bit codes, nested absmax and offset)
// bit for bit, and the dequantized values exactly (tolerance 0: both sides compute one float32
// product per element from the same bits; -0 and +0 count as equal, since bitsandbytes' C and
// PyTorch paths disagree on the sign of FP4's second zero).
func TestQuantFixtures(t *testing.T) {
	fxs, err := fixtures.Find("quant")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=quant fixtures found under", fixtures.Roots())
	}
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) { checkQuantFixture(t, fx) })
	}
}

func checkQuantFixture(t *testing.T, fx fixtures.Fixture) {
	data, err := os.ReadFile(filepath.Join(fx.Dir, "quant.json"))
	if err != nil {
		t.Fatal(err)
	}
	var qj quantJSON
	if err := json.Unmarshal(data, &qj); err != nil {
		t.Fatalf("%s/quant.json: %v", fx.Dir, err)
	}
	typ, err := quant.ParseType(qj.QuantType)
	if err != nil {
		t.Fatalf("%s/quant.json: %v", fx.Dir, err)
	}
	if qj.Blocksize != quant.Blocksize {
		t.Fatalf("%s/quant.json: blocksize %d, this package implements %d", fx.Dir, qj.Blocksize, quant.Blocksize)
	}
	src := readRaw(t, filepath.Join(fx.Dir, "weights.safetensors"))
	want := readRaw(t, filepath.Join(fx.Dir, "expected.safetensors"))

	code := typ.Code()
	if qm, ok := want["quant_map"]; !ok {
		t.Errorf("%s: expected.safetensors has no quant_map", fx.Dir)
	} else if err := sameBits(code[:], qm.f32); err != nil {
		t.Errorf("quant_map (%s code table): %v", typ, err)
	}
	if qj.CompressStatistics {
		if nm, ok := want["nested_quant_map"]; !ok {
			t.Errorf("%s: expected.safetensors has no nested_quant_map", fx.Dir)
		} else if err := sameBits(quant.DynamicCode[:], nm.f32); err != nil {
			t.Errorf("nested_quant_map (dynamic 8-bit code): %v", err)
		}
	}

	names := make([]string, 0, len(src))
	for n := range src {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		x := src[name]
		get := func(suffix string) raw {
			r, ok := want[name+"."+suffix]
			if !ok {
				t.Fatalf("%s: expected.safetensors has no %s.%s", fx.Dir, name, suffix)
			}
			return r
		}
		p, err := quant.Quantize4(x.f32, x.shape, typ, qj.CompressStatistics)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := sameBytes(p.Codes, get("codes").u8); err != nil {
			t.Errorf("%s codes: %v", name, err)
		}
		if qj.CompressStatistics {
			if err := sameBytes(p.Nested.Codes, get("absmax").u8); err != nil {
				t.Errorf("%s absmax (8-bit codes): %v", name, err)
			}
			if err := sameBits(p.Nested.Absmax, get("nested_absmax").f32); err != nil {
				t.Errorf("%s nested_absmax: %v", name, err)
			}
			if err := sameBits([]float32{p.Nested.Offset}, get("offset").f32); err != nil {
				t.Errorf("%s offset: %v", name, err)
			}
		} else if err := sameBits(p.Absmax, get("absmax").f32); err != nil {
			t.Errorf("%s absmax: %v", name, err)
		}

		// Dequantize bitsandbytes' own packed form, so that a quantization mismatch above does
		// not hide a dequantization one.
		ref := &quant.Packed{Type: typ, Blocksize: quant.Blocksize, Shape: x.shape, Codes: get("codes").u8}
		if qj.CompressStatistics {
			ref.Nested = &quant.NestedAbsmax{Codes: get("absmax").u8, Absmax: get("nested_absmax").f32,
				Offset: get("offset").f32[0], Blocksize: quant.NestedBlocksize}
		} else {
			ref.Absmax = get("absmax").f32
		}
		if err := ref.Check(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		deq := ref.Dequantize4()
		if x.dtype == safetensors.BF16 {
			deq = quant.FromBFloat16(quant.BFloat16Bits(deq))
		}
		if err := sameValues(deq, get("dequant").f32); err != nil {
			t.Errorf("%s dequant: %v", name, err)
		}
	}
}

func sameBytes(got, want []uint8) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d bytes, want %d", len(got), len(want))
	}
	var bad []string
	for i := range got {
		if got[i] != want[i] {
			bad = append(bad, fmt.Sprintf("[%d] %#02x want %#02x", i, got[i], want[i]))
		}
	}
	return summarize(bad, len(got))
}

func sameBits(got, want []float32) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	var bad []string
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			bad = append(bad, fmt.Sprintf("[%d] %g (%#08x) want %g (%#08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i])))
		}
	}
	return summarize(bad, len(got))
}

func sameValues(got, want []float32) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	var bad []string
	for i := range got {
		if got[i] != want[i] || got[i] != got[i] {
			bad = append(bad, fmt.Sprintf("[%d] %g want %g", i, got[i], want[i]))
		}
	}
	return summarize(bad, len(got))
}

func summarize(bad []string, n int) error {
	if len(bad) == 0 {
		return nil
	}
	count, more := len(bad), ""
	if count > 5 {
		more, bad = " …", bad[:5]
	}
	return fmt.Errorf("%d of %d differ: %s%s", count, n, strings.Join(bad, "; "), more)
}

// TestBlockwise8Fixtures checks the 8-bit quantizer of nested scales on its own, against
// bitsandbytes' quantize_blockwise on inputs chosen next to its rounding boundaries (exact
// comparison: codes and absmax bit for bit).
func TestBlockwise8Fixtures(t *testing.T) {
	fxs, err := fixtures.Find("quant")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, fx := range fxs {
		want := readRaw(t, filepath.Join(fx.Dir, "expected.safetensors"))
		in, ok := want["blockwise8.input"]
		if !ok {
			continue
		}
		seen++
		codes, absmax := quant.Quantize8(in.f32, quant.NestedBlocksize)
		if err := sameBytes(codes, want["blockwise8.codes"].u8); err != nil {
			t.Errorf("%s: blockwise8 codes: %v", fx.Name, err)
		}
		if err := sameBits(absmax, want["blockwise8.absmax"].f32); err != nil {
			t.Errorf("%s: blockwise8 absmax: %v", fx.Name, err)
		}
	}
	if seen == 0 {
		t.Fatal("no kind=quant fixture holds blockwise8.input")
	}
}
