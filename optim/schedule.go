package optim

import (
	"fmt"
	"math"
)

// Schedule is a learning-rate schedule over optimizer steps, as transformers' get_scheduler.
type Schedule struct {
	Kind        string  // "linear", "cosine", "constant", "constant_with_warmup"
	LR          float64 // peak learning rate
	WarmupSteps int
	TotalSteps  int
}

// At returns the learning rate of the optimizer step that follows `done` completed steps (HF's
// LambdaLR is evaluated at the scheduler's step count before it is advanced, so the first step
// of a warmup runs with a learning rate of 0).
func (s Schedule) At(done int) float64 {
	switch s.Kind {
	case "constant":
		return s.LR
	}
	if done < s.WarmupSteps {
		return s.LR * float64(done) / math.Max(1, float64(s.WarmupSteps))
	}
	switch s.Kind {
	case "constant_with_warmup":
		return s.LR
	case "cosine":
		progress := float64(done-s.WarmupSteps) / math.Max(1, float64(s.TotalSteps-s.WarmupSteps))
		return s.LR * math.Max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	default: // linear
		return s.LR * math.Max(0, float64(s.TotalSteps-done)/math.Max(1, float64(s.TotalSteps-s.WarmupSteps)))
	}
}

// Validate rejects unknown kinds.
func (s Schedule) Validate() error {
	switch s.Kind {
	case "linear", "cosine", "constant", "constant_with_warmup":
		return nil
	}
	return fmt.Errorf("lr_scheduler %q is unknown (linear, cosine, constant, constant_with_warmup)", s.Kind)
}
