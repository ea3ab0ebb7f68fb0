package model

import "math"

// NaViT position buckets of the vision embeddings, computed as transformers ≤ 4.54 computes
// them: float32 torch.arange for the boundaries k/S and for the fractional coordinates i/n, then
// bucketize(right=True). The result equals floor(S·i/n) except where float32 rounding puts i/n
// exactly on a boundary (e.g. n=25 or 49 with S=70), so the rounding itself is reproduced here.
// transformers 4.55 changed the algorithm (a regression) and later versions changed it again;
// the model was trained with this one.

// PositionBuckets returns, for a side of n valid patches on a grid of S patches per side, the
// bucket (0..S-1) of each of the n rows (or columns).
func PositionBuckets(n, S int) []int {
	boundaries := arangeF32(1/float64(S), 1.0, 1/float64(S))
	step := float32(1 / float64(n)) // 1 / n computed on a float32 tensor in the reference
	fracs := arangeF32(0, 1-1e-6, float64(step))
	out := make([]int, len(fracs))
	for i, f := range fracs {
		// bucketize(right=True): the number of boundaries ≤ f.
		b := 0
		for b < len(boundaries) && boundaries[b] <= f {
			b++
		}
		out[i] = b
	}
	return out
}

// arangeF32 is torch.arange(start, end, step) with dtype float32 as PyTorch's CPU kernel computes
// it: the length is ceil((end-start)/step) in double; elements in complete blocks of 16 are built
// as vectors of 8 lanes, base = float32(start + step·i0) and lane j = float32(base + step·j); the
// remaining n mod 16 elements are float32(start + step·i). This reproduces the reference bucket
// table for S=70 bit for bit, where the plain float32(start + step·i) everywhere misses n=49
// (i=28, 42) and n=58 (i=29).
func arangeF32(start, end, step float64) []float32 {
	const lanes, block = 8, 16
	n := int(math.Ceil((end - start) / step))
	out := make([]float32, n)
	vectorized := n / block * block
	for i := range out {
		if i >= vectorized {
			out[i] = float32(start + step*float64(i))
			continue
		}
		i0 := i / lanes * lanes
		base := float32(start + step*float64(i0))
		out[i] = float32(float64(base) + step*float64(i-i0))
	}
	return out
}
