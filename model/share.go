package model

import (
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Sibling makes a model of the same configuration whose frozen weights are m's own tensors, not
// copies: a server that serves a base model and several adapters holds the base weights once.
// Adapters attach to the sibling as to any model; a tensor an adapter replaces (modules_to_save,
// PEFT's base copies) is replaced in the sibling only, through SetVariable, which never frees a
// shared tensor.
func (m *Model) Sibling() *Model {
	s := New(m.Config, m.DType)
	s.Attention, s.Checkpointing, s.Quant = m.Attention, m.Checkpointing, m.Quant
	s.shared = map[*context.Variable]bool{}
	for v := range m.Ctx.IterVariables() {
		if v.Trainable || !v.HasValue() {
			continue
		}
		t, err := v.Value()
		if err != nil {
			continue
		}
		sv := s.Ctx.InAbsPath(v.Scope()).VariableWithValue(v.Name(), t).SetTrainable(false)
		s.shared[sv] = true
	}
	return s
}

// SetVariable gives v (a variable of m) the value t. A tensor m shares with another model is
// left alive for that model; any other old value is freed at once.
func (m *Model) SetVariable(v *context.Variable, t *tensors.Tensor) error {
	if m.shared[v] {
		delete(m.shared, v)
		return v.SetValuePreservingOld(t)
	}
	return v.SetValue(t)
}
