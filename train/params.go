package train

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
)

// Group is a set of trainable tensors sharing a learning rate and weight decay.
type Group struct {
	Name        string
	LR          float64
	WeightDecay float64
}

// Param is one trainable tensor: its name (HF/PEFT naming), variable, group and whether it
// decays, with its optimizer state.
type Param struct {
	Name   string
	Var    *context.Variable
	Group  int
	Decays bool
	m, v   *context.Variable // AdamW moments (float32)
	acc    *context.Variable // gradient accumulator (float32)
}

// FullTrain marks the base-model tensors under the given module prefixes (e.g.
// "model.connector") as trainable, converting them to float32 master copies. It returns their
// names. Frozen tensors keep their compute dtype and get no gradient or optimizer state.
func FullTrain(m *model.Model, prefixes []string) ([]string, error) {
	var names []string
	for _, prefix := range prefixes {
		found := false
		for _, p := range m.Config.Params() {
			if p.Name != prefix && !strings.HasPrefix(p.Name, prefix+".") {
				continue
			}
			found = true
			v := m.Variable(p.Name)
			if v == nil {
				return nil, fmt.Errorf("train: %s is not loaded", p.Name)
			}
			if v.Shape().DType == dtypes.Uint8 {
				return nil, fmt.Errorf("train: modules_to_save %s: %s is stored in 4 bits (a pre-quantized checkpoint) and cannot train fully; LoRA it instead (configs/sft-qlora.yaml) or load the full-precision checkpoint", prefix, p.Name)
			}
			if err := toFloat32(v); err != nil {
				return nil, fmt.Errorf("train: %s: %w", p.Name, err)
			}
			v.SetTrainable(true)
			names = append(names, p.Name)
		}
		if !found {
			return nil, fmt.Errorf("train: modules_to_save entry %q matches no tensor (e.g. model.connector.perceiver_resampler)", prefix)
		}
	}
	return names, nil
}

// toFloat32 replaces a variable's value by a float32 copy (the master weights of mixed precision).
func toFloat32(v *context.Variable) error {
	if v.DType() == dtypes.Float32 {
		return nil // already a master copy, or declared float32 shape-only for a compile-only plan
	}
	val, err := v.Value()
	if err != nil {
		return err
	}
	if val.DType() == dtypes.Float32 {
		return nil
	}
	dims := val.Shape().Dimensions
	out := tensors.FromShape(shapes.Make(dtypes.Float32, dims...))
	val.MustConstFlatData(func(flat any) {
		tensors.MustMutableFlatData(out, func(dst []float32) {
			switch src := flat.(type) {
			case []float32:
				copy(dst, src)
			default:
				for i := range dst {
					dst[i] = float32(model.FloatAt(src, i))
				}
			}
		})
	})
	return v.SetValue(out)
}

// collectParams gathers the adapter's and the fully trained tensors into groups: LoRA (and DoRA
// magnitudes) in group 0, fully trained modules in group 1. It creates the optimizer state.
func collectParams(m *model.Model, adapter *lora.Adapter, full []string) []*Param {
	var ps []*Param
	if adapter != nil {
		vars := adapter.Variables()
		names := make([]string, 0, len(vars))
		for n := range vars {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ps = append(ps, &Param{Name: n, Var: vars[n], Group: 0, Decays: optim.Decays(n)})
		}
	}
	for _, n := range full {
		ps = append(ps, &Param{Name: n, Var: m.Variable(n), Group: 1, Decays: optim.Decays(n)})
	}
	for _, p := range ps {
		shape := p.Var.Shape()
		state := func(kind string) *context.Variable {
			scope := "/optim/" + kind + p.Var.Scope()
			v := m.Ctx.InAbsPath(scope).VariableWithValue(p.Var.Name(), tensors.FromShape(shapes.Make(dtypes.Float32, shape.Dimensions...)))
			v.SetTrainable(false)
			return v
		}
		p.m, p.v, p.acc = state("exp_avg"), state("exp_avg_sq"), state("grad_acc")
	}
	return ps
}

// Accumulated is the variable holding the parameter's accumulated gradient (float32).
func (p *Param) Accumulated() *context.Variable { return p.acc }
