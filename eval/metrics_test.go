package eval

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// The expected values come from scripts/make_metric_fixtures.py, which restates the harness code
// paths in Python (and was checked there against the harnesses' own functions on every case).

type docCase struct {
	Prediction           string   `json:"prediction"`
	Answers              []string `json:"answers"`
	VLMEvalKitPrediction string   `json:"vlmevalkit_prediction"`
	LmmsEvalANLS         float64  `json:"lmms_eval_anls"`
	VLMEvalKitANLS       float64  `json:"vlmevalkit_anls"`
}

type textCase struct {
	Prediction           string   `json:"prediction"`
	Answers              []string `json:"answers"`
	VLMEvalKitPrediction string   `json:"vlmevalkit_prediction"`
	EvalAIPrediction     string   `json:"evalai_prediction"`
	EvalAIAnswers        []string `json:"evalai_answers"`
	VLMNormPrediction    string   `json:"vlmevalkit_normalized_prediction"`
	VLMAnswers           []string `json:"vlmevalkit_answers"`
	LmmsEvalAccuracy     float64  `json:"lmms_eval_accuracy"`
	VLMEvalKitAccuracy   float64  `json:"vlmevalkit_accuracy"`
}

type metricFile[C any] struct {
	Cases          []C     `json:"cases"`
	LmmsEvalScore  float64 `json:"lmms_eval_score"`
	VLMEvalKitScor float64 `json:"vlmevalkit_score"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

const tol = 1e-9

func TestANLSFixtures(t *testing.T) {
	var f metricFile[docCase]
	readJSON(t, "../testdata/metrics/docvqa_anls.json", &f)
	if len(f.Cases) < 200 {
		t.Fatalf("only %d cases", len(f.Cases))
	}
	lmms, _ := NewPreset("lmms-eval", DocVQA)
	vlm, _ := NewPreset("vlmevalkit", DocVQA)
	var sumL, sumV float64
	for i, c := range f.Cases {
		if got := PandasRoundTrip(c.Prediction); got != c.VLMEvalKitPrediction {
			t.Errorf("case %d: pandas round trip of %q = %q, want %q", i, c.Prediction, got, c.VLMEvalKitPrediction)
		}
		l := lmms.Score(lmms.Answer(c.Prediction), c.Answers)
		v := vlm.Score(c.Prediction, c.Answers)
		if math.Abs(l-c.LmmsEvalANLS) > tol {
			t.Errorf("case %d %q vs %q: lmms-eval ANLS %.12g, want %.12g", i, c.Prediction, c.Answers, l, c.LmmsEvalANLS)
		}
		if math.Abs(v-c.VLMEvalKitANLS) > tol {
			t.Errorf("case %d %q vs %q: VLMEvalKit ANLS %.12g, want %.12g", i, c.Prediction, c.Answers, v, c.VLMEvalKitANLS)
		}
		sumL += l
		sumV += v
	}
	n := float64(len(f.Cases))
	if math.Abs(sumL/n-f.LmmsEvalScore) > tol || math.Abs(100*sumV/n-f.VLMEvalKitScor) > 100*tol {
		t.Errorf("dataset scores %.12g / %.12g, want %.12g / %.12g", sumL/n, 100*sumV/n, f.LmmsEvalScore, f.VLMEvalKitScor)
	}
	t.Logf("%d DocVQA cases: lmms-eval %.6f, VLMEvalKit %.4f", len(f.Cases), sumL/n, 100*sumV/n)
}

func TestVQAAccuracyFixtures(t *testing.T) {
	var f metricFile[textCase]
	readJSON(t, "../testdata/metrics/textvqa_accuracy.json", &f)
	if len(f.Cases) < 200 {
		t.Fatalf("only %d cases", len(f.Cases))
	}
	lmms, _ := NewPreset("lmms-eval", TextVQA)
	vlm, _ := NewPreset("vlmevalkit", TextVQA)
	var sumL, sumV float64
	for i, c := range f.Cases {
		if got := NormalizeEvalAI(c.Prediction); got != c.EvalAIPrediction {
			t.Errorf("case %d: EvalAI(%q) = %q, want %q", i, c.Prediction, got, c.EvalAIPrediction)
		}
		for j, a := range c.Answers {
			if got := NormalizeEvalAI(a); got != c.EvalAIAnswers[j] {
				t.Errorf("case %d: EvalAI(%q) = %q, want %q", i, a, got, c.EvalAIAnswers[j])
			}
			if got := NormalizeVLMEvalKit(a); got != c.VLMAnswers[j] {
				t.Errorf("case %d: VLMEvalKit(%q) = %q, want %q", i, a, got, c.VLMAnswers[j])
			}
		}
		if got := NormalizeVLMEvalKit(PandasRoundTrip(c.Prediction)); got != c.VLMNormPrediction {
			t.Errorf("case %d: VLMEvalKit(%q) = %q, want %q", i, c.Prediction, got, c.VLMNormPrediction)
		}
		l := lmms.Score(lmms.Answer(c.Prediction), c.Answers)
		v := vlm.Score(c.Prediction, c.Answers)
		if math.Abs(l-c.LmmsEvalAccuracy) > tol {
			t.Errorf("case %d %q: lmms-eval accuracy %.12g, want %.12g", i, c.Prediction, l, c.LmmsEvalAccuracy)
		}
		if math.Abs(v-c.VLMEvalKitAccuracy) > tol {
			t.Errorf("case %d %q: VLMEvalKit accuracy %.12g, want %.12g", i, c.Prediction, v, c.VLMEvalKitAccuracy)
		}
		sumL += l
		sumV += v
	}
	n := float64(len(f.Cases))
	if math.Abs(sumL/n-f.LmmsEvalScore) > tol || math.Abs(100*sumV/n-f.VLMEvalKitScor) > 100*tol {
		t.Errorf("dataset scores %.12g / %.12g, want %.12g / %.12g", sumL/n, 100*sumV/n, f.LmmsEvalScore, f.VLMEvalKitScor)
	}
	t.Logf("%d TextVQA cases: lmms-eval %.6f, VLMEvalKit %.4f", len(f.Cases), sumL/n, 100*sumV/n)
}

func TestPythonStrings(t *testing.T) {
	cases := []struct{ in, lower, capitalize string }{
		{"İstanbul", "i\u0307stanbul", "İstanbul"},
		{"ΟΔΟΣ", "οδος", "Οδος"},
		{"ΣΑΣ ΣΑΣ.", "σας σας.", "Σας σας."},
		{"ßtraße", "ßtraße", "Sstraße"},
		{"ﬁne", "ﬁne", "Fine"},
		{"wHAT is THIS?", "what is this?", "What is this?"},
		{"", "", ""},
	}
	for _, c := range cases {
		if got := pyLower(c.in); got != c.lower {
			t.Errorf("lower(%q) = %q, want %q", c.in, got, c.lower)
		}
		if got := pyCapitalize(c.in); got != c.capitalize {
			t.Errorf("capitalize(%q) = %q, want %q", c.in, got, c.capitalize)
		}
	}
	if got := pyUpperLen("straße ﬃ"); got != 11 {
		t.Errorf("len(upper) = %d, want 11", got)
	}
	if got := pySplit("a\x1cb\u00a0c  d\n"); len(got) != 4 {
		t.Errorf("split = %q, want 4 words", got)
	}
}
