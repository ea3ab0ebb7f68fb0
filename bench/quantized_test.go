package bench

import (
	"io"
	"math"
	"testing"
)

// The QLoRA train step on the tiny config: every Linear but lm_head (and the connector's when it
// trains fully) packed in 4 bits, the step runs and its loss is that of random weights (≈ ln 100).
func TestRunTinyQLoRA(t *testing.T) {
	for _, connector := range []string{"lora", "full"} {
		o := DefaultOptions()
		o.Backend, o.Iters, o.Log = "go", 1, io.Discard
		o.Sections = []string{"train"}
		o.Quantization, o.Connector = "nf4", connector
		cfg, _, err := LoadConfig(o.Size)
		if err != nil {
			t.Fatal(err)
		}
		q, err := quantization(o, cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Run(o)
		if err != nil {
			t.Fatal(err)
		}
		if why := skipped(r.Train); why != "" {
			t.Fatalf("connector %s: train skipped: %s", connector, why)
		}
		if math.Abs(r.Train.Loss-math.Log(100)) > 0.1 || r.Quantization != "nf4" {
			t.Errorf("connector %s: loss %.4f (want ≈ ln 100), quantization %q", connector, r.Train.Loss, r.Quantization)
		}
		wantConnectorPacked := connector == "lora"
		if got := len(q.Skip) == 0; got != wantConnectorPacked {
			t.Errorf("connector %s: skip %v", connector, q.Skip)
		}
	}
}
