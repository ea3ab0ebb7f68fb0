package model

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"
)

// Every IEEE format's NaN and infinities are found, and nothing else is.
func TestNonFiniteAt(t *testing.T) {
	f32 := func(xs ...float32) safetensors.TensorView {
		b := make([]byte, 4*len(xs))
		for i, x := range xs {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		v, _ := safetensors.NewTensorView(safetensors.F32, []uint64{uint64(len(xs))}, b)
		return v
	}
	bf16 := func(bits ...uint16) safetensors.TensorView {
		b := make([]byte, 2*len(bits))
		for i, x := range bits {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		v, _ := safetensors.NewTensorView(safetensors.BF16, []uint64{uint64(len(bits))}, b)
		return v
	}
	f16 := func(bits ...uint16) safetensors.TensorView {
		v := bf16(bits...)
		w, _ := safetensors.NewTensorView(safetensors.F16, v.Shape(), v.Data())
		return w
	}
	nan := float32(math.NaN())
	for name, c := range map[string]struct {
		v    safetensors.TensorView
		want int
	}{
		"f32 finite":  {f32(1, -2, math.MaxFloat32, math.SmallestNonzeroFloat32), -1},
		"f32 nan":     {f32(1, 2, nan), 2},
		"f32 -inf":    {f32(float32(math.Inf(-1))), 0},
		"bf16 finite": {bf16(0x3f80, 0x7f7f, 0xff7f), -1},
		"bf16 nan":    {bf16(0x3f80, 0x7fc0), 1},
		"bf16 inf":    {bf16(0xff80), 0},
		"f16 finite":  {f16(0x3c00, 0x7bff), -1},
		"f16 inf":     {f16(0x3c00, 0x7c00), 1},
		"f16 nan":     {f16(0x7e00), 0},
	} {
		if got, _ := NonFiniteAt(c.v); got != c.want {
			t.Errorf("%s: index %d, want %d", name, got, c.want)
		}
	}
}

// Issue 11, item 5: weights holding NaN are refused with one line naming the file and tensor
// (generation, eval and merge call this on what they load).
func TestCheckpointCheckFinite(t *testing.T) {
	dir := t.TempDir()
	good := make([]byte, 16)
	bad := make([]byte, 16)
	binary.LittleEndian.PutUint32(bad[8:], math.Float32bits(float32(math.NaN())))
	header := `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}`
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, safetensorsBytes(header, append(append([]byte{}, good...), bad...)), 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	err = ck.CheckFinite()
	if err == nil || !strings.Contains(err.Error(), "tensor b holds NaN at element 2") || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}
