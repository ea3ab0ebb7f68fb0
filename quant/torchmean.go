package quant

// torchMean is tensor.mean() of a contiguous float32 vector as PyTorch computes it on an x86 CPU
// (AVX2 or no vector extension: 8 float lanes) in one thread: the cascade sum of ATen's
// SumKernel, then a float32 division by the count. Double quantization stores this mean as the
// offset of the scales, so reproducing its summation order is what makes the offset, and every
// nested code after it, bit-identical.
func torchMean(x []float32) float32 {
	return torchSum(x) / float32(len(x))
}

const (
	lanes     = 8 // float lanes of ATen's Vectorized<float> with AVX2
	ilp       = 4 // rows summed at once (row_sum's ilp_factor)
	numLevels = 4 // cascade levels of multi_row_sum
)

type vec [lanes]float32

func (v *vec) add(w *vec) {
	for i := range v {
		v[i] += w[i]
	}
}

// torchSum follows vectorized_inner_sum: whole vectors through the cascade, then the scalar
// tail, then the lanes in order. Fewer than 8 elements go through the scalar cascade.
func torchSum(x []float32) float32 {
	n := len(x)
	if n < lanes {
		return scalarRowSum(x)
	}
	nvec := n / lanes
	load := func(i int) vec {
		var v vec
		copy(v[:], x[i*lanes:(i+1)*lanes])
		return v
	}
	acc := rowSum(nvec, load)
	var final float32
	for k := nvec * lanes; k < n; k++ {
		final += x[k]
	}
	for _, p := range acc {
		final += p
	}
	return 0 + final
}

// rowSum is ATen's row_sum over n vectors: the vectors seen as rows of ilp, each column summed
// by the cascade, leftovers added to the first column, then the columns added together.
func rowSum(n int, load func(int) vec) vec {
	rows := n / ilp
	partial := multiRowSum(rows, func(row, col int) vec { return load(row*ilp + col) })
	for i := rows * ilp; i < n; i++ {
		v := load(i)
		partial[0].add(&v)
	}
	for k := 1; k < ilp; k++ {
		partial[0].add(&partial[k])
	}
	return partial[0]
}

// multiRowSum is ATen's multi_row_sum: numLevels accumulators per column; every levelStep rows
// the lower level is pushed up, and a level is pushed further only when its counter wraps, so
// only partial sums of similar size are added together.
func multiRowSum(size int, load func(row, col int) vec) [ilp]vec {
	levelPower := ceilLog2(size) / numLevels
	if levelPower < 4 {
		levelPower = 4
	}
	levelStep := 1 << levelPower
	levelMask := levelStep - 1
	var acc [numLevels][ilp]vec
	i := 0
	for i+levelStep <= size {
		for j := 0; j < levelStep; j, i = j+1, i+1 {
			for k := 0; k < ilp; k++ {
				v := load(i, k)
				acc[0][k].add(&v)
			}
		}
		for j := 1; j < numLevels; j++ {
			for k := 0; k < ilp; k++ {
				acc[j][k].add(&acc[j-1][k])
				acc[j-1][k] = vec{}
			}
			if i&(levelMask<<(j*levelPower)) != 0 {
				break
			}
		}
	}
	for ; i < size; i++ {
		for k := 0; k < ilp; k++ {
			v := load(i, k)
			acc[0][k].add(&v)
		}
	}
	for j := 1; j < numLevels; j++ {
		for k := 0; k < ilp; k++ {
			acc[0][k].add(&acc[j][k])
		}
	}
	return acc[0]
}

// scalarRowSum is row_sum on scalars (used below one vector's worth of elements): the same
// cascade with one lane.
func scalarRowSum(x []float32) float32 {
	sum := rowSum(len(x), func(i int) vec { return vec{x[i]} })
	return sum[0]
}

// ceilLog2 is ATen's utils::CeilLog2 (1 for x ≤ 2).
func ceilLog2(x int) int {
	if x <= 2 {
		return 1
	}
	n, v := 0, x-1
	for v > 0 {
		n++
		v >>= 1
	}
	return n
}
