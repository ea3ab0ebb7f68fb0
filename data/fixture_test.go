package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/nlpodyssey/safetensors"
)

// Test helpers for reference fixtures (../shared/spec/fixtures.md): roots are testdata/fixtures
// plus every directory in $IDEFICS2_FIXTURES; a malformed fixture fails naming its file.

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := fixtures.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

type fixtureMeta struct {
	Kind   string            `json:"kind"`
	SHA256 map[string]string `json:"sha256"`
	Shapes map[string][]int  `json:"shapes"`
	Notes  string            `json:"notes"`
}

// findFixtures returns the fixture directories of the given kind with the processor-specific
// keys of their meta.json.
func findFixtures(t testing.TB, kind string) map[string]fixtureMeta {
	found, err := fixtures.Find(kind)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fixtureMeta{}
	for _, fx := range found {
		b, err := os.ReadFile(filepath.Join(fx.Dir, "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m fixtureMeta
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s/meta.json: %v", fx.Dir, err)
		}
		out[fx.Dir] = m
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// tensor is a fixture array kept as its raw little-endian bytes, so that comparisons are
// bitwise and SHA-256 digests match the Python side's.
type tensor struct {
	DType string
	Shape []int
	Raw   []byte
}

func readSafetensors(t testing.TB, path string) map[string]tensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Deserialize(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]tensor{}
	for _, nv := range st.Tensors() {
		v := nv.TensorView
		tt := tensor{DType: v.DType().String(), Raw: v.Data()}
		for _, d := range v.Shape() {
			tt.Shape = append(tt.Shape, int(d))
		}
		out[nv.Name] = tt
	}
	return out
}

func (tt tensor) ints() []int64 {
	switch tt.DType {
	case "I64":
		out := make([]int64, len(tt.Raw)/8)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(tt.Raw[i*8:]))
		}
		return out
	case "U8":
		out := make([]int64, len(tt.Raw))
		for i, v := range tt.Raw {
			out[i] = int64(v)
		}
		return out
	}
	panic("not an integer tensor: " + tt.DType)
}

func (tt tensor) floats() []float32 {
	out := make([]float32, len(tt.Raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(tt.Raw[i*4:]))
	}
	return out
}

// rawI64 and rawF32 lay Go slices out as the fixtures store them.
func rawI64[T int32 | int64](v []T) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[i*8:], uint64(int64(x)))
	}
	return b
}

func rawF32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(x))
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
