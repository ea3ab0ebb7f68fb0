package model

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
)

// ToDevice moves every frozen weight of m to the backend's device 0 and frees its host copy.
// GoMLX copies a host tensor to the device at its first use and keeps the host copy: for the 8B
// model that is 15.3 GB of host memory held for a whole run for nothing. Trained tensors keep
// theirs, since checkpoints and adapter exports read them. It returns the bytes freed.
func (m *Model) ToDevice(be backends.Backend) (int64, error) {
	var freed int64
	for v := range m.Ctx.IterVariables() {
		if v.Trainable || !v.HasValue() {
			continue
		}
		t, err := v.Value()
		if err != nil {
			return freed, err
		}
		if !t.IsLocal() || t.IsShared() {
			continue // on the device only already, or one buffer shared with the host
		}
		if err := t.MaterializeOnDevice(be, false, 0); err != nil {
			return freed, fmt.Errorf("model: moving %s to the device: %w", v.ScopeAndName(), err)
		}
		freed += int64(t.Shape().Memory())
		t.FinalizeLocal()
	}
	return freed, nil
}
