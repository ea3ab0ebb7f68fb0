package quant

import "math"

// bf16RNE rounds to bfloat16 (nearest, ties to even), keeping NaN a NaN.
func bf16RNE(x float32) uint16 {
	bits := math.Float32bits(x)
	if x != x {
		return uint16(bits>>16) | 0x40
	}
	return uint16((bits + 0x7fff + (bits>>16)&1) >> 16)
}

// bf16ToFloat32 widens bfloat16 bits exactly.
func bf16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// FromBFloat16 widens raw bfloat16 values to float32 (exact), the form Quantize4 takes.
func FromBFloat16(b []uint16) []float32 {
	out := make([]float32, len(b))
	for i, v := range b {
		out[i] = bf16ToFloat32(v)
	}
	return out
}
