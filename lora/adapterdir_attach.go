package lora

import (
	"fmt"
	"path/filepath"

	"github.com/idefics2/idefics2/model"
)

// Attach attaches the checked adapter to m (a model of the base configuration it was opened
// with) and sets its weights from the file: the LoRA tensors, the modules_to_save tensors and the
// base copies PEFT saved, whatever key spelling the file uses. This is how every command loads
// a PEFT adapter directory.
func (a *AdapterDir) Attach(m *model.Model) (*Adapter, error) {
	ad, err := Attach(m, a.Layout.Config, 0)
	if err != nil {
		return nil, err
	}
	vars := ad.Variables()
	for _, canon := range a.Keys() {
		v, ok := vars[canon]
		if !ok {
			v = m.Variable(canon) // modules_to_save or a base copy, checked by OpenAdapterDir
		}
		if v == nil {
			return nil, fmt.Errorf("%s: %s is not a tensor of this model", a.Dir, a.keys[canon])
		}
		view, _ := a.Tensor(canon)
		// NaN or ±Inf would generate empty answers or merge into a broken model without a word.
		if err := model.CheckFiniteView(a.keys[canon], filepath.Join(a.Dir, WeightsFile), view); err != nil {
			return nil, err
		}
		t, err := model.ViewToTensor(view, v.Shape().DType)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", a.Dir, a.keys[canon], err)
		}
		if err := m.SetVariable(v, t); err != nil {
			return nil, err
		}
	}
	return ad, nil
}
