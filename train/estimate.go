package train

import (
	"fmt"
	"io"

	"github.com/idefics2/idefics2/model"
)

// printEstimate prints the memory the run needs before step 1: frozen weights in the compute
// dtype; per trainable parameter a float32 master, gradient accumulator and two AdamW moments;
// and the activations of the largest bucket (a rough count of the tensors backward keeps).
func printEstimate(w io.Writer, m *model.Model, st *Stepper, cfg Config) {
	var frozen, trainable int64
	trainSet := map[string]bool{}
	for _, p := range st.Params {
		trainSet[p.Name] = true
		trainable += int64(p.Var.Shape().Size())
	}
	for _, p := range m.Config.Params() {
		if !trainSet[p.Name] {
			frozen += int64(p.Size())
		}
	}
	bytesPer := int64(m.DType.Size())
	weights := frozen * bytesPer
	state := trainable * 16
	c := m.Config.Text
	T := int64(cfg.Data.MaxLength)
	if n := len(cfg.Data.SeqBuckets); n > 0 {
		T = int64(cfg.Data.SeqBuckets[n-1])
	}
	B := int64(cfg.Train.BatchSize)
	perLayer := B * T * int64(c.HiddenSize*10+c.IntermediateSize*3) * bytesPer
	acts := perLayer*int64(c.NumHiddenLayers) + B*T*int64(c.VocabSize)*4*2
	fmt.Fprintf(w, "memory estimate: weights %s (%d frozen params, %s), trainable %d params → master+grad+AdamW %s, activations at %d×%d tokens ≈ %s; total ≈ %s\n",
		human(weights), frozen, m.DType, trainable, human(state), B, T, human(acts), human(weights+state+acts))
}

func human(b int64) string {
	f := float64(b)
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if f < 1024 {
			return fmt.Sprintf("%.1f %s", f, u)
		}
		f /= 1024
	}
	return fmt.Sprintf("%.1f TiB", f)
}
