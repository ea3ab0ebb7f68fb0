package train

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig: any YAML file and any --set override load into a config or fail with an
// error, never a panic. Seeds: testdata/fuzz/FuzzLoadConfig.
func FuzzLoadConfig(f *testing.F) {
	if tiny, err := os.ReadFile(filepath.Join("..", "configs", "tiny.yaml")); err == nil {
		f.Add(string(tiny), "train.lr=5e-5")
	}
	f.Add("model:\n  path: m\ndata:\n  train: [{kind: custom, path: 'x/*.jsonl', columns: {images: img}}]\n", "lora.rank_pattern={v_proj: 3}")
	f.Add("train: 3\n", "data.train=[]")
	f.Add("lora:\n  alpha_pattern: {down_proj: 2.5}\n", "train.max_steps=-5")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yaml, set string) {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = LoadConfig(path, []string{set})
	})
}
