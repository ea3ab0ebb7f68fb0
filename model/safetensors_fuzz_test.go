package model

import (
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// FuzzSafetensorsHeader: whatever a file holds, opening it and converting its tensors is an
// error or a tensor, never a panic. Seeds: testdata/fuzz/FuzzSafetensorsHeader.
func FuzzSafetensorsHeader(f *testing.F) {
	f.Add(safetensorsBytes(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(safetensorsBytes(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},"b":{"dtype":"I64","shape":[],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(safetensorsBytes(`{"x":{"dtype":"F32","shape":[0,9223372036854775808],"data_offsets":[0,0]}}`, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseSafetensors("fuzz.safetensors", b)
		if err != nil {
			return
		}
		for _, nt := range st.Tensors() {
			for _, to := range []dtypes.DType{dtypes.Float32, dtypes.BFloat16, dtypes.Int64} {
				if tt, err := ViewToTensor(nt.TensorView, to); err == nil {
					tt.FinalizeAll()
				}
			}
			NonFiniteAt(nt.TensorView)
		}
	})
}
