package optim_test

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/idefics2/idefics2/optim"
)

type reference struct {
	Schedules []struct {
		Kind   string    `json:"kind"`
		LR     float64   `json:"lr"`
		Warmup int       `json:"warmup"`
		Total  int       `json:"total"`
		LRs    []float64 `json:"lrs"`
	} `json:"schedules"`
	Decays map[string]bool `json:"decays"`
}

func readReference(t *testing.T) reference {
	b, err := os.ReadFile("../testdata/optim/schedules.json")
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("testdata/optim/schedules.json: %v", err)
	}
	return r
}

// Every schedule gives, at every optimizer step, the learning rate transformers' get_scheduler
// gives (scripts/make_schedule_fixtures.py); both compute in double precision, so they agree to
// rounding (1e-12 relative).
func TestSchedulesMatchTransformers(t *testing.T) {
	r := readReference(t)
	if len(r.Schedules) == 0 {
		t.Fatal("no schedules in the reference")
	}
	for _, c := range r.Schedules {
		s := optim.Schedule{Kind: c.Kind, LR: c.LR, WarmupSteps: c.Warmup, TotalSteps: c.Total}
		for step, want := range c.LRs {
			if got := s.At(step); math.Abs(got-want) > 1e-12*math.Max(want, 1e-12) {
				t.Errorf("%s warmup %d total %d, step %d: lr %.17g, transformers %.17g", c.Kind, c.Warmup, c.Total, step, got, want)
			}
		}
	}
}

// Weight decay applies to exactly the parameters HF Trainer decays (no biases, no norms) on a
// LoRA adapter with the connector trained fully.
func TestDecayMatchesTrainer(t *testing.T) {
	r := readReference(t)
	for name, want := range r.Decays {
		if got := optim.Decays(name); got != want {
			t.Errorf("%s: decays=%v, HF Trainer %v", name, got, want)
		}
	}
}
