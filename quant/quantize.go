package quant

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Blocksize is the number of consecutive weights sharing one absmax scale (bitsandbytes' and
// transformers' default for 4-bit weights).
const Blocksize = 64

// NestedBlocksize is the block of absmax scales sharing one second-level scale under double
// quantization.
const NestedBlocksize = 256

// minAbsmax is the float32 nearest 1e-38, bitsandbytes' floor on a scale before dividing by it.
var minAbsmax = float32(1e-38)

// Packed is a tensor quantized to 4 bits.
type Packed struct {
	Type      Type
	Blocksize int
	Shape     []int // the original tensor's shape
	// Codes holds two codes per byte, the first element in the high nibble; an odd element count
	// leaves the last low nibble at the code of 0.
	Codes []uint8
	// Absmax is the float32 scale of each block; nil under double quantization.
	Absmax []float32
	// Nested is the double-quantized form of Absmax, or nil.
	Nested *NestedAbsmax
}

// NestedAbsmax is the absmax scales minus their mean, quantized to 8 bits in blocks of 256:
// scale[i] = DynamicCode[Codes[i]]·Absmax[i/256] + Offset.
type NestedAbsmax struct {
	Codes     []uint8
	Absmax    []float32
	Offset    float32
	Blocksize int
}

// NumElements is the element count of shape.
func NumElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Quantize4 quantizes x (row-major, shape) as bitsandbytes.functional.quantize_4bit does on the
// CPU with blocksize 64; doubleQuant is its compress_statistics. Source tensors of lower
// precision (bfloat16) are passed widened to float32, which is exact.
func Quantize4(x []float32, shape []int, typ Type, doubleQuant bool) (*Packed, error) {
	if _, err := ParseType(string(typ)); err != nil {
		return nil, err
	}
	if n := NumElements(shape); n != len(x) {
		return nil, fmt.Errorf("quant: %d values for shape %v (%d elements)", len(x), shape, n)
	}
	if len(x) == 0 {
		return nil, fmt.Errorf("quant: cannot quantize an empty tensor")
	}
	for i, v := range x {
		if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
			return nil, fmt.Errorf("quant: element %d is %g; only finite weights can be quantized", i, v)
		}
	}
	codes, absmax := quantize4(x, typ, Blocksize)
	p := &Packed{Type: typ, Blocksize: Blocksize, Shape: append([]int(nil), shape...), Codes: codes, Absmax: absmax}
	if doubleQuant {
		p.Nested = QuantizeAbsmax(absmax)
		p.Absmax = nil
	}
	return p, nil
}

// quantize4 is the default (PyTorch) kernel bitsandbytes runs on the CPU: each whole block is
// scaled by the float32 reciprocal of its absmax (floored at 1e-38 for the division only, the
// stored absmax of an all-zero block stays 0); a trailing partial block is divided by its own
// absmax, floored, and that floored value is stored. Scaled values are clamped to [−1, 1] and
// bucketed by the midpoints of the sorted code table.
func quantize4(x []float32, typ Type, blocksize int) ([]uint8, []float32) {
	tab := tables4[typ]
	n := len(x)
	full := n / blocksize
	blocks := (n + blocksize - 1) / blocksize
	absmax := make([]float32, blocks)
	codes := make([]uint8, (n+1)/2)
	parallelBlocks(full, func(b int) {
		blk := x[b*blocksize : (b+1)*blocksize]
		out := codes[b*blocksize/2 : (b+1)*blocksize/2]
		am := absMax(blk)
		absmax[b] = am
		inv := 1 / max(am, minAbsmax)
		for j := range out {
			hi := tab.bucket(clamp1(float32(blk[2*j] * inv)))
			lo := tab.bucket(clamp1(float32(blk[2*j+1] * inv)))
			out[j] = hi<<4 | lo
		}
	})
	if full < blocks {
		blk := x[full*blocksize:]
		am := max(absMax(blk), minAbsmax)
		absmax[full] = am
		for j, v := range blk {
			c := tab.bucket(clamp1(v / am))
			if i := full*blocksize + j; i%2 == 0 {
				codes[i/2] |= c << 4
			} else {
				codes[i/2] |= c
			}
		}
	}
	if n%2 == 1 {
		codes[n/2] |= tab.bucket(0)
	}
	return codes, absmax
}

func absMax(x []float32) float32 {
	var m float32
	for _, v := range x {
		if v < 0 {
			v = -v
		}
		if v > m {
			m = v
		}
	}
	return m
}

func clamp1(x float32) float32 {
	if x < -1 {
		return -1
	}
	if x > 1 {
		return 1
	}
	return x
}

// parallelBlocks runs f(b) for b in [0, n) on all cores; blocks write disjoint bytes (block sizes
// are even, so no byte holds codes of two blocks).
func parallelBlocks(n int, f func(b int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < 4096 || workers == 1 {
		for b := 0; b < n; b++ {
			f(b)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := lo; b < hi; b++ {
				f(b)
			}
		}()
	}
	wg.Wait()
}
