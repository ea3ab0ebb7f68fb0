package eval

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// echo answers each prompt with a canned text, chosen by a marker in the question.
type echo struct {
	answers map[string]string
	batches []int
}

func (e *echo) Predict(_ context.Context, reqs []Request) ([]Output, error) {
	e.batches = append(e.batches, len(reqs))
	out := make([]Output, len(reqs))
	for i, r := range reqs {
		for k, v := range e.answers {
			if strings.Contains(r.Prompt, k) {
				out[i] = Output{Text: v, NewTokens: 3, Stopped: true}
			}
		}
	}
	return out, nil
}

func TestRunWritesPredictionsAndReport(t *testing.T) {
	src := &Samples{List: []Sample{
		{ID: "1", Question: "q-one", Answers: []string{"42"}, Images: [][]byte{nil}},
		{ID: "2", Question: "q-two", Answers: []string{"Paris"}, Images: [][]byte{nil}},
		{ID: "3", Question: "q-three", Answers: []string{"abcd"}, Images: [][]byte{nil}},
		{ID: "4", Question: "q-four", Answers: []string{"unused"}, Images: [][]byte{nil}},
	}}
	pred := &echo{answers: map[string]string{"q-one": " 42", "q-two": " paris.", "q-three": " abxy"}}
	dir := t.TempDir()
	rep, err := Run(context.Background(), Config{Task: "docvqa", Preset: "vlmevalkit", Limit: 3, BatchSize: 2, OutDir: dir}, src, pred)
	if err != nil {
		t.Fatal(err)
	}
	// ANLS: "42" = 1; "paris." vs "Paris": distance 1 over 6 → 5/6; "abxy" vs "abcd": 0.5 (kept).
	want := (1 + 5.0/6 + 0.5) / 3
	if rep.Samples != 3 || math.Abs(rep.Score-want) > 1e-12 || math.Abs(rep.Reported-100*want) > 1e-9 {
		t.Errorf("report %+v, want 3 samples, score %.6f", rep, want)
	}
	if len(pred.batches) != 2 || pred.batches[0] != 2 || pred.batches[1] != 1 {
		t.Errorf("batches %v, want [2 1]", pred.batches)
	}
	f, err := os.Open(filepath.Join(dir, "predictions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []Prediction
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var p Prediction
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, p)
	}
	if len(lines) != 3 || lines[1].Prediction != "paris." || lines[1].Generated != " paris." || !strings.HasPrefix(lines[0].Prompt, "User:<image>q-one") {
		t.Errorf("predictions %+v", lines)
	}
	var r Report
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &r); err != nil || r.Samples != 3 || r.ReportedAs != "percent" {
		t.Errorf("report.json %s (%v)", data, err)
	}
}
