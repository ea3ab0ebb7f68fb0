package model_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

// TestGenerateParity runs every kind=generate fixture (HF generate's greedy output on the same
// weights and inputs) and requires identical tokens; then it runs every row of each batch alone
// and requires the same new tokens as in the batch. Decoding must compile one decode-step graph
// per cache bucket, not one per token.
func TestGenerateParity(t *testing.T) {
	fxs, err := fixtures.Find("generate")
	if err != nil {
		t.Fatal(err)
	}
	if len(fxs) == 0 {
		t.Fatal("no kind=generate fixtures found under", fixtures.Roots())
	}
	for _, fx := range fxs {
		t.Run(fx.Name, func(t *testing.T) { checkGenerateFixture(t, fx) })
	}
}

func checkGenerateFixture(t *testing.T, fx fixtures.Fixture) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(fx.Dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := readGenerateJSON(fx.Dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fixtures.ReadTensors(fx.Dir + "/inputs.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	want, err := fixtures.ReadTensors(fx.Dir + "/expected.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	in, err := inputsFromFixture(raw)
	if err != nil {
		t.Fatalf("%s/inputs.safetensors: %v", fx.Dir, err)
	}
	seq, ok := want["sequences"]
	if !ok || len(seq.Shape) != 2 || seq.Shape[0] != in.B {
		t.Fatalf("%s/expected.safetensors: sequences [B, T+new] missing or malformed", fx.Dir)
	}
	gen, err := model.NewGenerator(m, be)
	if err != nil {
		t.Fatal(err)
	}
	got, err := gen.Generate(in, gc)
	if err != nil {
		t.Fatal(err)
	}
	if got.T+got.Steps != seq.Shape[1] {
		t.Errorf("generated %d steps, HF %d", got.Steps, seq.Shape[1]-in.T)
	}
	for r := 0; r < in.B; r++ {
		w := seq.I[r*seq.Shape[1] : (r+1)*seq.Shape[1]]
		g := got.Sequences[r*(got.T+got.Steps) : (r+1)*(got.T+got.Steps)]
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("row %d:\n got %v\nwant %v", r, g[in.T:], w[in.T:])
		}
	}
	st := gen.Stats()
	t.Logf("steps %d, new tokens per row %v, compiles: prefill %d, decode step %d", got.Steps, lens(got.NewTokens), st.PrefillCompiles, st.StepCompiles)
	if st.PrefillCompiles != 1 || (got.Steps > 1 && st.StepCompiles != 1) {
		t.Errorf("one generation compiled %d prefill and %d decode-step graphs, want 1 and 1", st.PrefillCompiles, st.StepCompiles)
	}

	if in.B == 1 {
		return
	}
	// Each row alone, without padding, must continue exactly as in the batch.
	for r := 0; r < in.B; r++ {
		single := singleRow(in, r)
		alone, err := gen.Generate(single, gc)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(alone.NewTokens[0]) != fmt.Sprint(got.NewTokens[r]) {
			t.Errorf("row %d alone generates %v, in the batch %v", r, alone.NewTokens[0], got.NewTokens[r])
		}
	}
}

func lens(xs [][]int32) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = len(x)
	}
	return out
}

// singleRow is sample r of in as a batch of one, without its text padding (its images and
// padding image slots are kept: NewBatch drops the empty slots).
func singleRow(in model.Inputs, r int) model.Inputs {
	out := model.Inputs{B: 1, N: in.N, H: in.H, W: in.W}
	for t := 0; t < in.T; t++ {
		if in.AttentionMask == nil || in.AttentionMask[r*in.T+t] != 0 {
			out.InputIDs = append(out.InputIDs, in.InputIDs[r*in.T+t])
		}
	}
	out.T = len(out.InputIDs)
	if in.PixelValues != nil {
		per := len(in.PixelValues) / in.B
		out.PixelValues = in.PixelValues[r*per : (r+1)*per]
		if in.PixelAttentionMask != nil {
			per := len(in.PixelAttentionMask) / in.B
			out.PixelAttentionMask = in.PixelAttentionMask[r*per : (r+1)*per]
		}
	}
	return out
}

// generateFixture loads the kind=generate fixture name: a generator for its model on the test
// backend, its generation settings and its inputs.
func generateFixture(t *testing.T, name string) (*model.Generator, model.GenerationConfig, model.Inputs) {
	t.Helper()
	fxs, err := fixtures.Find("generate")
	if err != nil {
		t.Fatal(err)
	}
	var fx *fixtures.Fixture
	for i := range fxs {
		if fxs[i].Name == name {
			fx = &fxs[i]
		}
	}
	if fx == nil {
		t.Fatalf("fixture %s not found", name)
	}
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(fx.Dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := readGenerateJSON(fx.Dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fixtures.ReadTensors(fx.Dir + "/inputs.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	in, err := inputsFromFixture(raw)
	if err != nil {
		t.Fatalf("%s/inputs.safetensors: %v", fx.Dir, err)
	}
	gen, err := model.NewGenerator(m, be)
	if err != nil {
		t.Fatal(err)
	}
	return gen, gc, in
}

// readGenerateJSON reads a fixture's generate.json (HF generate keyword arguments) over the
// defaults.
func readGenerateJSON(dir string) (model.GenerationConfig, error) {
	data, err := os.ReadFile(filepath.Join(dir, "generate.json"))
	if err != nil {
		return model.GenerationConfig{}, err
	}
	return model.ParseGenerationConfig(data, model.DefaultGenerationConfig())
}

// TestGenerateBuckets checks that prompts of different lengths within one prompt bucket and
// generation lengths within one cache bucket reuse the compiled graphs, that padding the image
// canvas (PixelBucket) changes nothing, and that sampling is reproducible from its seed and
// equals greedy decoding with top_k = 1.
func TestGenerateBuckets(t *testing.T) {
	gen, gc, in := generateFixture(t, "generate-batch-left-padded")
	gc.MaxNewTokens = 6
	ref, err := gen.Generate(in, gc)
	if err != nil {
		t.Fatal(err)
	}
	// Rows alone have other lengths (all within the first 32-token bucket); max_new 5 and 6
	// share the 64-slot cache bucket.
	for r := 0; r < in.B; r++ {
		c := gc
		c.MaxNewTokens = 5 + r%2
		if _, err := gen.Generate(singleRow(in, r), c); err != nil {
			t.Fatal(err)
		}
	}
	st := gen.Stats()
	// Prefill: (B=3, 4 images), (B=1, 1 image), (B=1, 2 images); decode step: B=3 and B=1.
	if st.PrefillCompiles != 3 || st.StepCompiles != 2 {
		t.Errorf("compiled %d prefill and %d decode-step graphs, want 3 and 2", st.PrefillCompiles, st.StepCompiles)
	}

	gen.PixelBucket = 3 // 12-pixel multiples: the 16×16 canvas becomes 24×24
	padded, err := gen.Generate(in, gc)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(padded.NewTokens) != fmt.Sprint(ref.NewTokens) {
		t.Errorf("padded image canvas: %v, want %v", padded.NewTokens, ref.NewTokens)
	}
	gen.PixelBucket = 0

	s := gc
	s.DoSample, s.Temperature, s.TopK, s.TopP, s.Seed = true, 0.9, 1, 1, 7
	one, err := gen.Generate(in, s)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(one.NewTokens) != fmt.Sprint(ref.NewTokens) {
		t.Errorf("sampling with top_k=1: %v, greedy %v", one.NewTokens, ref.NewTokens)
	}
	s.TopK, s.Temperature = 0, 1.5
	a, err := gen.Generate(in, s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := gen.Generate(in, s)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.NewTokens) != fmt.Sprint(b.NewTokens) {
		t.Errorf("same seed, different samples: %v vs %v", a.NewTokens, b.NewTokens)
	}
	s.Seed = 8
	c, err := gen.Generate(in, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("greedy %v; seed 7 %v; seed 8 %v", ref.NewTokens, a.NewTokens, c.NewTokens)
}
