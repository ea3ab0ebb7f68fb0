package train

import "github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"

func floatAt(flat any, i int) float64 {
	switch f := flat.(type) {
	case []float32:
		return float64(f[i])
	case []float64:
		return f[i]
	case []bfloat16.BFloat16:
		return float64(f[i].Float32())
	}
	panic("train: unsupported dtype")
}
