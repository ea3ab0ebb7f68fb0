package bench

import (
	"strings"
	"testing"

	"github.com/idefics2/idefics2/internal/backend"
)

// The 8B train step at the recipe's longest bucket (B=2, T=2048 with one 980² image per row:
// 1982 text tokens + 66 image tokens; LoRA dropout 0.1 as the recipe) must stay under 40 GiB of device memory in XLA's own plan.
// Before gradient checkpointing, blocked attention and in-place updates the plan was ≈145 GiB.
// Compile-only: weights are declared by shape, so this runs on a small host in about 1–3
// minutes; it needs an XLA backend (make test-xla-cpu).
func TestPlan8BUnderTarget(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(backend.Describe(be)), "xla") {
		t.Skip("XLA's memory plan needs an XLA backend (GOMLX_BACKEND=xla:cpu, make test-xla-cpu)")
	}
	o := DefaultOptions()
	o.Size, o.DType, o.Sections, o.CompileOnly = "8b", "bfloat16", []string{"train"}, true
	o.Batch, o.TextTokens, o.ImageSize, o.LoRADropout = 2, 1982, 980, 0.1
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Train
	if s == nil || s.Skipped != "" {
		t.Fatalf("no plan: %+v", s)
	}
	const target = 40 << 30
	t.Logf("8b B2×T2048: device peak %.2f GiB (%s), resident %.2f GiB", gib(s.DevicePeakBytes), s.PeakGraph, gib(s.ResidentBytes))
	for _, g := range s.Graphs {
		t.Logf("  %s: args %.2f GiB, temp %.2f GiB, out %.2f GiB, alias %.2f GiB", g.Name, gib(g.ArgumentBytes), gib(g.TempBytes), gib(g.OutputBytes), gib(g.AliasBytes))
	}
	if s.DevicePeakBytes <= s.ResidentBytes {
		t.Fatalf("peak %d ≤ resident %d: the plan read no temporaries", s.DevicePeakBytes, s.ResidentBytes)
	}
	if s.DevicePeakBytes > target {
		t.Errorf("8b B2×T2048 train step plans %.2f GiB of device memory, over the 40 GiB target", gib(s.DevicePeakBytes))
	}
}
