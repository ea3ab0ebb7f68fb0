package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// TestLogitsProcessors compares the logits processors with HF's own on random scores
// (testdata/generate/logits_processors.json, written by scripts/make_generate_fixtures.py):
// repetition penalty, bad words (one to three tokens), temperature, top-k with ties, top-p.
func TestLogitsProcessors(t *testing.T) {
	data, err := os.ReadFile("../testdata/generate/logits_processors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []struct {
			Settings struct {
				RepetitionPenalty *float64 `json:"repetition_penalty"`
				BadWordsIDs       [][]int  `json:"bad_words_ids"`
				Temperature       *float64 `json:"temperature"`
				TopK              *int     `json:"top_k"`
				TopP              *float64 `json:"top_p"`
			} `json:"settings"`
			History []int32    `json:"history"`
			Scores  []float32  `json:"scores"`
			Want    []*float64 `json:"want"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Cases) < 20 {
		t.Fatalf("only %d cases", len(file.Cases))
	}
	for i, tc := range file.Cases {
		c := GenerationConfig{DoSample: true, Temperature: 1, TopP: 1, RepetitionPenalty: 1, BadWordsIDs: tc.Settings.BadWordsIDs}
		if s := tc.Settings; s.RepetitionPenalty != nil {
			c.RepetitionPenalty = *s.RepetitionPenalty
		}
		if s := tc.Settings; s.Temperature != nil {
			c.Temperature = *s.Temperature
		}
		if s := tc.Settings; s.TopK != nil {
			c.TopK = *s.TopK
		}
		if s := tc.Settings; s.TopP != nil {
			c.TopP = *s.TopP
		}
		scores := append([]float32(nil), tc.Scores...)
		processScores(scores, tc.History, 0, &c)
		for j, w := range tc.Want {
			got := scores[j]
			if w == nil {
				if !math.IsInf(float64(got), -1) {
					t.Errorf("case %d %+v: score %d = %g, HF removed it", i, tc.Settings, j, got)
				}
				continue
			}
			if float32(*w) != got {
				t.Errorf("case %d %+v: score %d = %.9g, HF %.9g", i, tc.Settings, j, got, *w)
			}
		}
	}
}

// TestSampleDistribution checks that sampling follows the softmax of the processed scores.
func TestSampleDistribution(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	scores := []float32{0, float32(math.Log(3)), negInf, float32(math.Log(6))}
	counts := make([]int, len(scores))
	const n = 100000
	for i := 0; i < n; i++ {
		counts[sample(scores, rng)]++
	}
	want := []float64{0.1, 0.3, 0, 0.6}
	for i, w := range want {
		if got := float64(counts[i]) / n; math.Abs(got-w) > 0.01 {
			t.Errorf("token %d drawn %.3f of the time, want %.2f", i, got, w)
		}
	}
}
