package model

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/nlpodyssey/safetensors"
)

// parseSafetensors reads a whole safetensors file's header and checks it (see checkShapes).
func parseSafetensors(path string, data []byte) (safetensors.SafeTensors, error) {
	parsed, err := safetensors.Deserialize(data)
	if err != nil {
		return parsed, fmt.Errorf("%s: not a valid safetensors file: %w", path, err)
	}
	return parsed, checkShapes(path, parsed)
}

// checkShapes rejects header shapes that cannot be tensors. The safetensors library checks that
// the element count times the element size equals the bytes between the offsets, but a shape with
// a zero dimension has zero elements whatever its other dimensions hold: [0, 2^63] passes its
// check and then fails (a panic, not an error) when a tensor of that shape is made. Here every
// shape's element count, taken over its non-zero dimensions, must fit an int with room for the
// byte count, so no dimension can overflow later.
func checkShapes(path string, st safetensors.SafeTensors) error {
	for _, nt := range st.Tensors() {
		if err := checkShape(nt.Name, nt.TensorView); err != nil {
			return fmt.Errorf("%s: not a valid safetensors file: %w", path, err)
		}
	}
	return nil
}

func checkShape(name string, v safetensors.TensorView) error {
	n := uint64(1)
	for _, d := range v.Shape() {
		if d == 0 {
			continue
		}
		hi, lo := bits.Mul64(n, d)
		if hi != 0 || lo > math.MaxInt64/16 {
			return fmt.Errorf("tensor %s has shape %v, whose element count overflows", name, v.Shape())
		}
		n = lo
	}
	if want := numElements(v.Shape()) * v.DType().Size(); uint64(len(v.Data())) != want {
		return fmt.Errorf("tensor %s has shape %v of %s (%d bytes) but its offsets span %d bytes", name, v.Shape(), v.DType(), want, len(v.Data()))
	}
	return nil
}

func numElements(shape []uint64) uint64 {
	n := uint64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}
