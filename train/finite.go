package train

import (
	"fmt"
	"math"
	"path/filepath"
)

// checkFinite stops a run whose loss or gradient norm is NaN or infinite. The optimizer step has
// already written non-finite values into the weights by then, so nothing more is logged or
// saved: the newest checkpoint on disk stays the last good one, and the message says where it is
// and what usually helps.
func checkFinite(step int, loss, gradNorm float64, dir string) error {
	what := ""
	switch {
	case math.IsNaN(loss) || math.IsInf(loss, 0):
		what = fmt.Sprintf("the loss is %v", loss)
	case math.IsNaN(gradNorm) || math.IsInf(gradNorm, 0):
		what = fmt.Sprintf("the gradient norm is %v (loss %.4g)", gradNorm, loss)
	default:
		return nil
	}
	keep := "no checkpoint was written yet"
	if ck := LatestCheckpoint(dir); ck != "" {
		keep = "the last good checkpoint is " + filepath.Base(ck) + " (continue from it with --resume after changing the config)"
	}
	return fmt.Errorf("step %d: %s, training diverged; nothing of this step was saved, %s; try a lower train.lr, more train.warmup_steps, train.max_grad_norm=1, or model.dtype=float32", step, what, keep)
}
