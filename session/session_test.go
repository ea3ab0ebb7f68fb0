package session

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/model"
)

// The generation config of a model directory is its generation_config.json over HF's defaults,
// for every caller: generate, eval and the trainer's generate_eval read it here.
func TestGenerationConfig(t *testing.T) {
	dir := t.TempDir()
	g, err := GenerationConfig(dir)
	if err != nil || !slices.Equal(g.EOSTokenIDs, model.DefaultGenerationConfig().EOSTokenIDs) {
		t.Fatalf("without generation_config.json: %+v, %v", g, err)
	}
	js := `{"eos_token_id": [7, 9], "bad_words_ids": [[5]], "pad_token_id": 3}`
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	if g, err = GenerationConfig(dir); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.EOSTokenIDs, []int{7, 9}) || g.PadTokenID != 3 || len(g.BadWordsIDs) != 1 || g.BadWordsIDs[0][0] != 5 {
		t.Errorf("read %+v", g)
	}
}

// A directory that is not a model is one line saying what to do.
func TestLoadModelMissing(t *testing.T) {
	_, err := LoadModel(t.TempDir(), "float32", 0)
	if err == nil || !strings.Contains(err.Error(), "has no config.json: download the checkpoint") {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadModel(t.TempDir(), "float16", 0); err == nil || !strings.Contains(err.Error(), `dtype "float16"`) {
		t.Fatalf("got %v", err)
	}
}

func TestDecodeBackend(t *testing.T) {
	for in, want := range map[string]string{
		"go":                  "go:parallelism=-1,dotgeneral_small",
		"go:parallelism=-1":   "go:parallelism=-1,dotgeneral_small",
		"go:dotgeneral_large": "go:dotgeneral_large",
		"xla:cpu":             "xla:cpu",
	} {
		if got := DecodeBackend(in); got != want {
			t.Errorf("DecodeBackend(%q) = %q, want %q", in, got, want)
		}
	}
}
