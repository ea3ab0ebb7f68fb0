package model_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

// BenchmarkGenerate measures prefill milliseconds and decode tokens per second, greedy, on each
// model directory of $IDEFICS2_BENCH_DIRS (':'-separated; written by scripts/bench_generate.py
// with the same prompt and image for HF) or, without it, on the generate-single-image fixture.
// When a directory holds bench_hf.json, the HF numbers and the Go/HF ratios are printed too.
//
//	.venv/bin/python scripts/bench_generate.py --config small --out /tmp/bench/small
//	IDEFICS2_BENCH_DIRS=/tmp/bench/small go test ./model/ -run '^$' -bench Generate -benchtime 1x
func BenchmarkGenerate(b *testing.B) {
	dirs := strings.Split(os.Getenv("IDEFICS2_BENCH_DIRS"), ":")
	if dirs[0] == "" {
		fxs, err := fixtures.Find("generate")
		if err != nil {
			b.Fatal(err)
		}
		for _, fx := range fxs {
			if fx.Name == "generate-single-image" {
				dirs = []string{fx.Dir}
			}
		}
	}
	for _, dir := range dirs {
		b.Run(filepath.Base(dir), func(b *testing.B) { benchGenerate(b, dir) })
	}
}

func benchGenerate(b *testing.B, dir string) {
	const newTokens = 32
	be, err := backend.New("")
	if err != nil {
		b.Fatal(err)
	}
	m, err := model.Load(dir, dtypes.Float32)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := fixtures.ReadTensors(filepath.Join(dir, "inputs.safetensors"))
	if err != nil {
		b.Fatal(err)
	}
	in, err := inputsFromFixture(raw)
	if err != nil {
		b.Fatal(err)
	}
	gen, err := model.NewGenerator(m, be)
	if err != nil {
		b.Fatal(err)
	}
	gc := model.DefaultGenerationConfig()
	gc.EOSTokenIDs, gc.BadWordsIDs = nil, nil // decode exactly the tokens asked for
	run := func(n int) model.GenerateStats {
		gc.MaxNewTokens = n
		before := gen.Stats()
		if _, err := gen.Generate(in, gc); err != nil {
			b.Fatal(err)
		}
		after := gen.Stats()
		return model.GenerateStats{PrefillTime: after.PrefillTime - before.PrefillTime, StepTime: after.StepTime - before.StepTime,
			Steps: after.Steps - before.Steps, Tokens: after.Tokens - before.Tokens}
	}
	run(newTokens + 1) // compiles both graphs
	var prefill, step time.Duration
	var tokens int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st := run(newTokens + 1)
		prefill += st.PrefillTime
		step += st.StepTime
		tokens += st.Tokens
	}
	b.StopTimer()
	prefillMS := float64(prefill.Milliseconds()) / float64(b.N)
	if prefill < time.Millisecond*time.Duration(b.N) {
		prefillMS = float64(prefill.Microseconds()) / 1e3 / float64(b.N)
	}
	decode := float64(tokens) / step.Seconds()
	b.ReportMetric(prefillMS, "prefill-ms")
	b.ReportMetric(decode, "decode-tok/s")
	st := gen.Stats()
	b.Logf("%s: T=%d, prefill %.1f ms, decode %.1f tokens/s (batch 1, %d tokens); compiles: prefill %d, decode step %d",
		filepath.Base(dir), in.T, prefillMS, decode, newTokens, st.PrefillCompiles, st.StepCompiles)
	if data, err := os.ReadFile(filepath.Join(dir, "bench_hf.json")); err == nil {
		var hf struct {
			PrefillMS float64 `json:"prefill_ms"`
			Decode    float64 `json:"decode_tokens_per_s"`
			Threads   int     `json:"threads"`
		}
		if json.Unmarshal(data, &hf) == nil && hf.PrefillMS > 0 {
			b.Logf("HF transformers (%d threads): prefill %.1f ms, decode %.1f tokens/s; Go/HF: prefill time ×%.2f, decode speed ×%.2f",
				hf.Threads, hf.PrefillMS, hf.Decode, prefillMS/hf.PrefillMS, decode/hf.Decode)
		}
	}
}
