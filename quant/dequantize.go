package quant

import "fmt"

// Scales returns the float32 absmax of every block, dequantizing nested scales if needed.
func (p *Packed) Scales() []float32 {
	if p.Nested != nil {
		return p.Nested.Scales()
	}
	return p.Absmax
}

// Check verifies that the parts of p agree with its shape, so that a corrupt or mismatched
// checkpoint is reported before anything reads out of range.
func (p *Packed) Check() error {
	if _, err := ParseType(string(p.Type)); err != nil {
		return err
	}
	n := NumElements(p.Shape)
	if p.Blocksize <= 0 || p.Blocksize%2 != 0 {
		return fmt.Errorf("blocksize %d is not a positive even number", p.Blocksize)
	}
	if len(p.Codes) != (n+1)/2 {
		return fmt.Errorf("%d bytes of codes for shape %v, want %d", len(p.Codes), p.Shape, (n+1)/2)
	}
	blocks := (n + p.Blocksize - 1) / p.Blocksize
	if p.Nested == nil {
		if len(p.Absmax) != blocks {
			return fmt.Errorf("%d absmax values for shape %v, want %d", len(p.Absmax), p.Shape, blocks)
		}
		return nil
	}
	nb := p.Nested
	if len(nb.Codes) != blocks {
		return fmt.Errorf("%d quantized absmax values for shape %v, want %d", len(nb.Codes), p.Shape, blocks)
	}
	if nb.Blocksize <= 0 || len(nb.Absmax) != (blocks+nb.Blocksize-1)/nb.Blocksize {
		return fmt.Errorf("%d nested absmax values for %d scales in blocks of %d", len(nb.Absmax), blocks, nb.Blocksize)
	}
	return nil
}

// Dequantize4 returns code[c]·absmax[block] for every element as float32, the values
// bitsandbytes' dequantize_4bit computes before casting to the tensor's dtype (a bfloat16 tensor
// is then rounded to nearest even: see BFloat16Bits).
func (p *Packed) Dequantize4() []float32 {
	code := p.Type.Code()
	scales := p.Scales()
	n := NumElements(p.Shape)
	out := make([]float32, n)
	for i := range out {
		b := p.Codes[i/2]
		c := b >> 4
		if i%2 == 1 {
			c = b & 0xF
		}
		out[i] = code[c] * scales[i/p.Blocksize]
	}
	return out
}

// BFloat16Bits rounds float32 values to bfloat16 (nearest, ties to even) as PyTorch and
// bitsandbytes do, returning the raw bits.
func BFloat16Bits(x []float32) []uint16 {
	out := make([]uint16, len(x))
	for i, v := range x {
		out[i] = bf16RNE(v)
	}
	return out
}
