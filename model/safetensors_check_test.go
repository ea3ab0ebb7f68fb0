package model

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// safetensorsBytes is a file with the given header and data.
func safetensorsBytes(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	return append(append(b, header...), data...)
}

// Issue 11, item 6: a header with shape [0, 2^63] passed the library's check (zero elements,
// zero bytes) and panicked when the tensor was made (reachable through --resume). Such shapes are
// now one error naming the file and tensor, and a shape disagreeing with its offsets too.
func TestSafetensorsImpossibleShapes(t *testing.T) {
	dir := t.TempDir()
	for name, header := range map[string]string{
		"zero_times_2^63": `{"x":{"dtype":"F32","shape":[0,9223372036854775808],"data_offsets":[0,0]}}`,
		"zero_times_big":  `{"x":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}`,
		"offsets_short":   `{"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}`,
	} {
		path := filepath.Join(dir, name+".safetensors")
		if err := os.WriteFile(path, safetensorsBytes(header, make([]byte, 8)[:dataLen(header)]), 0o644); err != nil {
			t.Fatal(err)
		}
		ck, err := openAndConvert(t, path)
		if err == nil {
			ck.Close()
			t.Errorf("%s: opened and converted without an error", name)
			continue
		}
		if !strings.Contains(err.Error(), path) || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%s: error is not one line naming the file: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func dataLen(header string) int {
	var h map[string]struct {
		Offsets [2]int `json:"data_offsets"`
	}
	_ = json.Unmarshal([]byte(header), &h)
	return h["x"].Offsets[1]
}

// openAndConvert opens a file and converts every tensor, turning a panic into a test failure.
func openAndConvert(t *testing.T, path string) (ck *Checkpoint, err error) {
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: panic: %v", path, r)
			err = os.ErrInvalid
		}
	}()
	ck, err = OpenSafetensors(path)
	if err != nil {
		return nil, err
	}
	for _, n := range ck.Names() {
		v, _, _ := ck.Tensor(n)
		tt, err := ViewToTensor(v, dtypes.Float32)
		if err != nil {
			return ck, err
		}
		tt.FinalizeAll()
	}
	return ck, nil
}
