package quant

import (
	"math"
	"sort"
)

// decades are the Python floats 10**-6 … 10**0 that scale each group of fractions.
var decades = [7]float64{1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1}

// DynamicCode is bitsandbytes' signed 8-bit "dynamic" map (create_dynamic_map(signed=True,
// max_exponent_bits=7, total_bits=8)), the code of double-quantized absmax scales: for each
// decade 10⁻⁶ … 10⁰, 2^i evenly spaced fractions of it (i = 0 … 6) with both signs, plus 0 and 1,
// sorted ascending. Index = the 8-bit code.
var DynamicCode = makeDynamicCode()

func makeDynamicCode() [256]float32 {
	var data []float64
	for i := 0; i < 7; i++ {
		b := linspace32(0.1, 1, (1<<i)+1)
		scale := float32(decades[i])
		for j := 0; j+1 < len(b); j++ {
			mean := (b[j] + b[j+1]) / 2
			data = append(data, float64(scale*mean))
		}
		for j := 0; j+1 < len(b); j++ {
			mean := (b[j] + b[j+1]) / 2
			data = append(data, float64(-scale*mean))
		}
	}
	data = append(data, 0, 1)
	sort.Float64s(data)
	var out [256]float32
	for i, v := range data {
		out[i] = float32(v)
	}
	return out
}

// linspace32 is torch.linspace(start, end, steps, dtype=float32) on the CPU: the first half
// counts up from start and the second half down from end, by a float32 step; PyTorch's AVX2
// build fuses each step·index and the addition into one FMA.
func linspace32(start64, end64 float64, steps int) []float32 {
	start, end := float32(start64), float32(end64)
	out := make([]float32, steps)
	if steps == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(steps-1)
	half := steps / 2
	for i := range out {
		if i < half {
			out[i] = fma32(step, float32(i), start)
		} else {
			out[i] = fma32(-step, float32(steps-i-1), end)
		}
	}
	return out
}

// fma32 is a float32 fused multiply-add: the product of two float32 fits in a float64 exactly, so
// the only rounding left is the final one, as with an FMA instruction... except where the sum
// itself is inexact in float64, which math.FMA covers.
func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}
