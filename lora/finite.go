package lora

import (
	"path/filepath"

	"github.com/idefics2/idefics2/model"
)

// checkFinite refuses a merge whose inputs hold NaN or ±Inf: merged, they would make a model
// that loads and generates nothing useful, with no error anywhere. The adapter is checked first
// (it is small, and where divergence shows), then the base.
func checkFinite(ad *AdapterDir, base *model.Checkpoint) error {
	file := filepath.Join(ad.Dir, WeightsFile)
	for _, k := range ad.Keys() {
		v, ok := ad.Tensor(k)
		if !ok {
			continue
		}
		if err := model.CheckFiniteView(k, file, v); err != nil {
			return err
		}
	}
	return base.CheckFinite()
}
