package eval_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/train"
)

// TestEndToEnd evaluates the tiny random Idefics2 (real tokenizer) on the local lmms-lab DocVQA
// and TextVQA samples with both presets: parquet → processor → KV-cache generation → decode →
// metric → predictions.jsonl and report.json. The scores of a random model mean nothing; the
// test checks that every stage runs and that batching does not change the answers.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a tiny model")
	}
	dir := t.TempDir()
	if _, err := train.EnsureTiny(filepath.Join(dir, "model"), 3); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(filepath.Join(dir, "model"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := model.NewGenerator(m, be)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := data.LoadTokenizer("../testdata/tokenizer/idefics2", data.CompatTrained)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	ip := data.DefaultImageProcessorConfig()
	ip.Size = data.ImageSize{LongestEdge: 64, ShortestEdge: 32}
	gc := model.DefaultGenerationConfig()
	pred := eval.NewModelPredictor(gen, tok, ip, gc)

	for _, task := range []eval.Task{eval.DocVQA, eval.TextVQA} {
		root := "../testdata/datasets/lmms-lab/DocVQA"
		if task == eval.TextVQA {
			root = "../testdata/datasets/lmms-lab/textvqa"
		}
		for _, preset := range eval.Presets {
			var answers [2][]string
			for k, bs := range []int{1, 3} {
				src, err := eval.OpenLmmsLab(task, root, "validation")
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, string(task), preset)
				cfg := eval.Config{Task: string(task), Preset: preset, Limit: 4, BatchSize: bs, MaxNewTokens: 6, OutDir: out}
				rep, err := eval.Run(context.Background(), cfg, src, pred)
				if err != nil {
					t.Fatalf("%s %s: %v", task, preset, err)
				}
				if rep.Samples != 4 || rep.Errors != 0 {
					t.Fatalf("%s %s: %+v", task, preset, rep)
				}
				if _, err := os.Stat(filepath.Join(out, "report.json")); err != nil {
					t.Fatal(err)
				}
				lines, err := os.ReadFile(filepath.Join(out, "predictions.jsonl"))
				if err != nil {
					t.Fatal(err)
				}
				answers[k] = append(answers[k], string(lines))
				t.Logf("%s %s batch %d: score %.4f (%s %g), %.1f samples/s", task, preset, bs, rep.Score, rep.ReportedAs, rep.Reported, rep.PerSecond)
			}
			if answers[0][0] != answers[1][0] {
				t.Errorf("%s %s: batch 3 predictions differ from batch 1:\n%s\n%s", task, preset, answers[0][0], answers[1][0])
			}
		}
	}
	st := gen.Stats()
	t.Logf("compiles: prefill %d, decode step %d; %d prefills, %d steps", st.PrefillCompiles, st.StepCompiles, st.Prefills, st.Steps)
}
