package lora_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
)

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// poisonFirst damages the first floating point tensor of path (see fixtures.PoisonFirst).
func poisonFirst(t *testing.T, path string) string {
	t.Helper()
	name, err := fixtures.PoisonFirst(path)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// Issue 11, item 5: an adapter (or base) holding NaN merged into a NaN model with exit 0; the
// merge now refuses with one line naming the file and the tensor, and writes nothing.
func TestMergeRefusesNonFinite(t *testing.T) {
	fx := fixtureDir(t, "adapter-lora-bf16")
	adapter := copyDir(t, filepath.Join(fx, "adapter"))
	name := poisonFirst(t, filepath.Join(adapter, lora.WeightsFile))
	out := filepath.Join(t.TempDir(), "merged")
	_, err := lora.Merge(fx, adapter, out, lora.MergeOptions{})
	if err == nil || !strings.Contains(err.Error(), "NaN") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("NaN adapter tensor %s: err = %v", name, err)
	}
	t.Log(err)
	if _, err := os.Stat(out); err == nil {
		t.Error("the refused merge left an output directory")
	}

	base := copyDir(t, fx)
	poisonFirst(t, filepath.Join(base, "model.safetensors"))
	if _, err := lora.Merge(base, filepath.Join(fx, "adapter"), out, lora.MergeOptions{}); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("NaN base: err = %v", err)
	}
}
