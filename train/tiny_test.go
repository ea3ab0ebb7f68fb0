package train_test

import (
	"context"
	"encoding/json"
	"github.com/idefics2/idefics2/internal/fixtures"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/train"
)

// repoRoot is the module root (tests run in the package directory).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := fixtures.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// tinyConfig is configs/tiny.yaml with its paths made absolute and the outputs in tmp.
func tinyConfig(t *testing.T, tmp string, sets ...string) train.Config {
	root := repoRoot(t)
	base := []string{
		"model.path=" + filepath.Join(tmp, "model"),
		"model.tokenizer=" + filepath.Join(root, "testdata/tokenizer/idefics2"),
		"data.train=[{kind: cauldron, path: " + filepath.Join(root, "testdata/datasets/the_cauldron") + ", subsets: [tiny_shapes]}]",
		"data.eval=[{kind: cauldron, path: " + filepath.Join(root, "testdata/datasets/the_cauldron") + ", subsets: [tiny_shapes]}]",
		"train.output_dir=" + filepath.Join(tmp, "run"),
		"train.progress_bar=false",
	}
	cfg, err := train.LoadConfig(filepath.Join(root, "configs/tiny.yaml"), append(base, sets...))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The README's first command learns: on the embedded data the loss of the answer tokens falls
// from ≈ 20 (a random model over 32,003 tokens) to a fraction of it, which no model that ignores
// its training signal reaches. Its adapter is exported in PEFT's format.
func TestTinyRunOverfits(t *testing.T) {
	tmp := t.TempDir()
	cfg := tinyConfig(t, tmp)
	res, err := train.Run(context.Background(), cfg, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	losses := readLosses(t, filepath.Join(res.OutputDir, "metrics.jsonl"))
	if len(losses) != cfg.Train.MaxSteps {
		t.Fatalf("metrics has %d steps, want %d", len(losses), cfg.Train.MaxSteps)
	}
	last := 0.0
	for _, l := range losses[len(losses)-5:] {
		last += l / 5
	}
	t.Logf("loss %.3f → mean of the last 5 steps %.3f", losses[0], last)
	if losses[0] < 10 {
		t.Errorf("first loss %.3f: a random tiny model should start near 20", losses[0])
	}
	if last > 0.25*losses[0] {
		t.Errorf("loss fell only from %.3f to %.3f (threshold %.3f)", losses[0], last, 0.25*losses[0])
	}
	for _, f := range []string{"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "loss.png"} {
		if _, err := os.Stat(filepath.Join(res.OutputDir, f)); err != nil {
			t.Error(err)
		}
	}
}

func readLosses(t *testing.T, path string) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m train.Metrics
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.Step != len(out)+1 {
			t.Fatalf("%s: step %d after %d lines", path, m.Step, len(out))
		}
		if math.IsNaN(m.Loss) {
			t.Fatalf("step %d: loss is NaN", m.Step)
		}
		out = append(out, m.Loss)
	}
	return out
}

// An unknown key is one error naming the nearest valid key.
func TestConfigUnknownKey(t *testing.T) {
	_, err := train.LoadConfig(filepath.Join(repoRoot(t), "configs/tiny.yaml"), []string{"train.learning_rate=1e-4"})
	if err == nil || !strings.Contains(err.Error(), `unknown key "train.learning_rate"`) || !strings.Contains(err.Error(), `"train.lr"`) {
		t.Fatalf("got %v, want an unknown-key error suggesting train.lr", err)
	}
}
