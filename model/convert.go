package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/nlpodyssey/safetensors"
	"github.com/x448/float16"
)

// ViewToTensor converts a safetensors view into a GoMLX tensor of dtype `to`. Floating point
// sources (F32, F64, BF16, F16) convert to F32 or BF16; integer sources (I64, I32, U8, BOOL) to
// Int32, Int64 or Float32. The pure Go backend has no Float16, so F16 checkpoints are converted
// here, once, on load.
func ViewToTensor(v safetensors.TensorView, to dtypes.DType) (*tensors.Tensor, error) {
	dims := make([]int, len(v.Shape()))
	for i, d := range v.Shape() {
		dims[i] = int(d)
	}
	t := tensors.FromShape(shapes.Make(to, dims...))
	src := v.Data()
	n := t.Size()
	var err error
	switch to {
	case dtypes.Float32:
		tensors.MustMutableFlatData(t, func(dst []float32) { err = decodeFloats(src, v.DType(), n, func(i int, x float32) { dst[i] = x }) })
	case dtypes.BFloat16:
		tensors.MustMutableFlatData(t, func(dst []bfloat16.BFloat16) {
			if v.DType() == safetensors.BF16 { // bit copy, no rounding twice
				for i := range dst {
					dst[i] = bfloat16.FromBits(binary.LittleEndian.Uint16(src[2*i:]))
				}
				return
			}
			err = decodeFloats(src, v.DType(), n, func(i int, x float32) { dst[i] = BF16RoundNearestEven(x) })
		})
	case dtypes.Int64:
		tensors.MustMutableFlatData(t, func(dst []int64) { err = decodeInts(src, v.DType(), n, func(i int, x int64) { dst[i] = x }) })
	case dtypes.Int32:
		tensors.MustMutableFlatData(t, func(dst []int32) { err = decodeInts(src, v.DType(), n, func(i int, x int64) { dst[i] = int32(x) }) })
	default:
		err = fmt.Errorf("conversion to %s is not supported", to)
	}
	if err != nil {
		t.FinalizeAll()
		return nil, err
	}
	return t, nil
}

func decodeFloats(src []byte, dt safetensors.DType, n int, set func(int, float32)) error {
	switch dt {
	case safetensors.F32:
		for i := 0; i < n; i++ {
			set(i, math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case safetensors.F64:
		for i := 0; i < n; i++ {
			set(i, float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))))
		}
	case safetensors.BF16:
		for i := 0; i < n; i++ {
			set(i, math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:]))<<16))
		}
	case safetensors.F16:
		for i := 0; i < n; i++ {
			set(i, float16.Frombits(binary.LittleEndian.Uint16(src[2*i:])).Float32())
		}
	default:
		return fmt.Errorf("dtype %s is not a floating point type", dt)
	}
	return nil
}

func decodeInts(src []byte, dt safetensors.DType, n int, set func(int, int64)) error {
	switch dt {
	case safetensors.I64:
		for i := 0; i < n; i++ {
			set(i, int64(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case safetensors.I32:
		for i := 0; i < n; i++ {
			set(i, int64(int32(binary.LittleEndian.Uint32(src[4*i:]))))
		}
	case safetensors.U8, safetensors.BOOL:
		for i := 0; i < n; i++ {
			set(i, int64(src[i]))
		}
	default:
		return fmt.Errorf("dtype %s is not an integer type", dt)
	}
	return nil
}

// BF16RoundNearestEven converts like PyTorch's float32 → bfloat16 (round to nearest, ties to
// even; NaN stays NaN). GoMLX's bfloat16.FromFloat32 truncates instead, which would shift every
// weight of an F32 checkpoint run in bf16 by up to one unit in the last place.
func BF16RoundNearestEven(x float32) bfloat16.BFloat16 {
	bits := math.Float32bits(x)
	if x != x {
		return bfloat16.FromBits(uint16(bits>>16) | 0x40)
	}
	rounding := uint32(0x7fff) + (bits>>16)&1
	return bfloat16.FromBits(uint16((bits + rounding) >> 16))
}

// FloatAt reads element i of a tensor's flat data of a floating point dtype (float32, float64
// or bfloat16) as float64.
func FloatAt(flat any, i int) float64 {
	switch f := flat.(type) {
	case []float32:
		return float64(f[i])
	case []float64:
		return f[i]
	case []bfloat16.BFloat16:
		return float64(f[i].Float32())
	}
	panic(fmt.Sprintf("model: %T is not a floating point tensor", flat))
}
