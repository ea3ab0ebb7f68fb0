package quant

import "sync"

// QuantizeAbsmax double-quantizes 4-bit scales as bitsandbytes does with compress_statistics:
// offset = mean(absmax) (PyTorch's float32 mean), then absmax − offset quantized blockwise to the
// 8-bit DynamicCode in blocks of 256 by bitsandbytes' CPU kernel.
func QuantizeAbsmax(absmax []float32) *NestedAbsmax {
	offset := torchMean(absmax)
	centered := make([]float32, len(absmax))
	for i, a := range absmax {
		centered[i] = a - offset
	}
	codes, scales := Quantize8(centered, NestedBlocksize)
	return &NestedAbsmax{Codes: codes, Absmax: scales, Offset: offset, Blocksize: NestedBlocksize}
}

// Scales returns the float32 absmax scales: DynamicCode[code]·absmax[i/256] + offset, as
// bitsandbytes' dequantize_blockwise followed by the offset addition computes them.
func (n *NestedAbsmax) Scales() []float32 {
	out := make([]float32, len(n.Codes))
	for i, c := range n.Codes {
		out[i] = float32(DynamicCode[c]*n.Absmax[i/n.Blocksize]) + n.Offset
	}
	return out
}

// Quantize8 is bitsandbytes' CPU quantize_blockwise with the dynamic code: per block, absmax =
// max|x|; an all-zero block gets code 0 everywhere; otherwise each x·(1/absmax) goes through a
// 65536-bin lookup table of nearest codes (not an exact nearest-code search: values near a
// midpoint can take the neighbour, as in bitsandbytes).
func Quantize8(x []float32, blocksize int) ([]uint8, []float32) {
	lut := dynamicLUT()
	blocks := (len(x) + blocksize - 1) / blocksize
	codes := make([]uint8, len(x))
	absmax := make([]float32, blocks)
	for b := 0; b < blocks; b++ {
		blk := x[b*blocksize : min((b+1)*blocksize, len(x))]
		am := absMax(blk)
		absmax[b] = am
		if am == 0 {
			continue
		}
		inv := 1 / am
		for j, v := range blk {
			codes[b*blocksize+j] = lut[lutIndex(float32(v*inv))]
		}
	}
	return codes, absmax
}

const lutSize = 65536

// lutIndex maps a scaled value to its bin: trunc((clamp(v)+1)·0.5·65535 + 0.5), where
// bitsandbytes' compiled kernel fuses the last multiply and add into one FMA (emulated exactly in
// float64: the product of a float32 and 65535 fits in 53 bits).
func lutIndex(v float32) uint16 {
	t := (clamp1(v) + 1) * 0.5
	return uint16(int32(float32(float64(t)*(lutSize-1) + 0.5)))
}

var (
	lutOnce sync.Once
	lut8    []uint8
)

// dynamicLUT is bitsandbytes' build_quantize_lut for DynamicCode: bin i stands for the value
// −1 + 2i/65535 and holds the first code whose upper midpoint is not below it.
func dynamicLUT() []uint8 {
	lutOnce.Do(func() {
		var mid [255]float32
		for i := range mid {
			mid[i] = 0.5 * (DynamicCode[i] + DynamicCode[i+1])
		}
		lut8 = make([]uint8, lutSize)
		c := 0
		for i := range lut8 {
			v := float32(2*float32(i))/(lutSize-1) - 1
			for c < 255 && mid[c] < v {
				c++
			}
			lut8[i] = uint8(c)
		}
	})
	return lut8
}
