package lora

import (
	"math"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// rowNormsOf is rowNorms for a weight given as values [out·in] (a dequantized 4-bit weight).
func rowNormsOf(w []float32, out, in int) *tensors.Tensor {
	norms := make([]float32, out)
	for o := range norms {
		s := 0.0
		for _, x := range w[o*in : (o+1)*in] {
			s += float64(x) * float64(x)
		}
		norms[o] = float32(math.Sqrt(s))
	}
	return tensors.FromFlatDataAndDimensions(norms, out)
}
