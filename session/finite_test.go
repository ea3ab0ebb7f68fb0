package session

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/internal/fixtures"
)

// Issue 11, item 5: a model or adapter whose weights hold NaN generated an empty answer with
// exit 0 (idefics2-generate) and an eval report of zeros (idefics2-eval); both load through
// Load, which now refuses such weights with one line naming the file and the tensor.
func TestLoadRefusesNonFiniteWeights(t *testing.T) {
	fxs, err := fixtures.Find("adapter")
	if err != nil || len(fxs) == 0 {
		t.Fatalf("no adapter fixtures: %v", err)
	}
	var fx string
	for _, f := range fxs {
		if f.Name == "adapter-lora-bf16" {
			fx = f.Dir
		}
	}
	if fx == "" {
		t.Fatal("fixture adapter-lora-bf16 not found")
	}
	for _, which := range []string{"model", "adapter"} {
		base, adapter := copyTree(t, fx), ""
		file := filepath.Join(base, "model.safetensors")
		if which == "adapter" {
			adapter = filepath.Join(base, "adapter")
			file = filepath.Join(adapter, "adapter_model.safetensors")
		}
		if _, err := fixtures.PoisonFirst(file); err != nil {
			t.Fatal(err)
		}
		_, err := Load(Options{Path: base, Adapter: adapter, Backend: "go"})
		if err == nil || !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), file) {
			t.Errorf("NaN in the %s: err = %v", which, err)
			continue
		}
		t.Logf("%s: %v", which, err)
	}
}

func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
