package model_test

import (
	"fmt"
	"testing"

	"github.com/idefics2/idefics2/model"
)

// TestRunningEqualsAlone is continuous batching: rows join a running batch at different steps,
// with budgets that make its cache grow, and leave it at different steps, so that it shrinks;
// every row's tokens must equal the row generated alone, greedy and sampled (each row samples
// from its own seeded stream).
func TestRunningEqualsAlone(t *testing.T) {
	gen, gc, in := generateFixture(t, "generate-batch-left-padded")
	gc.EOSTokenIDs = nil // every row runs its whole budget, so that the budgets decide who leaves when
	sampled := gc
	sampled.DoSample, sampled.Temperature, sampled.TopK, sampled.TopP = true, 1.5, 0, 1

	// Joins: request i enters before step joinAt[i] with budget[i] tokens. 3 new rows ... 70
	// tokens need 96+ slots, so the 64-slot cache grows; rows 0 and 1 leave early, so the batch
	// of 8 rows shrinks.
	type request struct {
		row, joinAt, budget int
		c                   model.GenerationConfig
	}
	reqs := []request{{0, 0, 4, gc}, {1, 0, 6, sampled}, {2, 2, 40, gc}, {0, 3, 70, sampled}, {1, 3, 5, gc}, {2, 9, 3, gc}}
	want := make([][]int32, len(reqs))
	for i, q := range reqs {
		c := q.c
		c.MaxNewTokens, c.Seed = q.budget, uint64(10+i)
		alone, err := gen.Generate(singleRow(in, q.row), c)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = alone.NewTokens[0]
	}

	run := gen.NewRunning()
	run.Buckets = true
	defer run.Close()
	rows := make([]*model.Row, len(reqs))
	maxCap, shrunk := 0, false
	for step := 0; ; step++ {
		for i, q := range reqs {
			if q.joinAt != step {
				continue
			}
			c := q.c
			c.MaxNewTokens, c.Seed = q.budget, uint64(10+i)
			got, err := run.Admit(singleRow(in, q.row), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			rows[i] = got[0]
		}
		maxCap = max(maxCap, run.Size().Rows)
		live, err := run.Step()
		if err != nil {
			t.Fatal(err)
		}
		if live > 0 && run.Size().Rows < maxCap {
			shrunk = true
		}
		if live == 0 && step > 9 {
			break
		}
	}
	for i, row := range rows {
		if !row.Done || fmt.Sprint(row.NewTokens) != fmt.Sprint(want[i]) {
			t.Errorf("request %d (row %d, joins at step %d, sampled %v): %v in the running batch, %v alone",
				i, reqs[i].row, reqs[i].joinAt, reqs[i].c.DoSample, row.NewTokens, want[i])
		}
	}
	if maxCap < 4 || !shrunk {
		t.Errorf("the batch reached %d rows and shrank: %v; want ≥ 4 rows, then fewer", maxCap, shrunk)
	}
	st := gen.Stats()
	t.Logf("largest batch %d rows; compiles: prefill %d, decode step %d", maxCap, st.PrefillCompiles, st.StepCompiles)
}
