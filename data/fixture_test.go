package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"
)

// Test helpers for reference fixtures (../shared/spec/fixtures.md): roots are testdata/fixtures
// plus every directory in $IDEFICS2_FIXTURES; a malformed fixture fails naming its file.

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func fixtureRoots(t testing.TB) []string {
	roots := []string{filepath.Join(repoRoot(t), "testdata", "fixtures")}
	for _, d := range strings.Split(os.Getenv("IDEFICS2_FIXTURES"), ":") {
		if d != "" {
			roots = append(roots, d)
		}
	}
	return roots
}

type fixtureMeta struct {
	Kind   string            `json:"kind"`
	SHA256 map[string]string `json:"sha256"`
	Shapes map[string][]int  `json:"shapes"`
	Notes  string            `json:"notes"`
}

// findFixtures returns the directories under the roots whose meta.json has the given kind.
func findFixtures(t testing.TB, kind string) map[string]fixtureMeta {
	out := map[string]fixtureMeta{}
	for _, root := range fixtureRoots(t) {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) && path == root {
					return filepath.SkipDir
				}
				return err
			}
			if d.IsDir() || d.Name() != "meta.json" {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			// Other kinds may give shared keys other shapes: read the kind first.
			var k struct {
				Kind string `json:"kind"`
			}
			if err := json.Unmarshal(b, &k); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if k.Kind != kind {
				return nil
			}
			var m fixtureMeta
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			{
				out[filepath.Dir(path)] = m
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
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
