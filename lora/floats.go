package lora

import "github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"

// toFloat64 reads element i of a flat slice of a floating point dtype.
func toFloat64(flat any, i int) float64 {
	switch f := flat.(type) {
	case []float32:
		return float64(f[i])
	case []float64:
		return f[i]
	case []bfloat16.BFloat16:
		return float64(f[i].Float32())
	}
	panic("lora: unsupported weight dtype")
}
