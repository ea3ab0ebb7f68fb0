package train_test

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

func fmtInt(k int) string { return strconv.Itoa(k) }

// fixtureBatch reads a fixture's inputs.safetensors into a model batch.
func fixtureBatch(t *testing.T, fx fixtures.Fixture, c model.Config) *model.Batch {
	t.Helper()
	raw, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "inputs.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := fixtures.ModelInputs(raw)
	if err != nil {
		t.Fatalf("%s/inputs.safetensors: %v", fx.Dir, err)
	}
	b, err := model.NewBatch(c, in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
