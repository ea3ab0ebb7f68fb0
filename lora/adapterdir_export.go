package lora

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/model"
	"github.com/nlpodyssey/safetensors"
)

// WriteAdapterDir writes a PEFT adapter directory (adapter_model.safetensors in PEFT's key
// format, adapter_config.json) from tensors named as Adapter.Variables() and the model name
// them: <module>.lora_A.weight, <module>.lora_B.weight, <module>.lora_magnitude_vector, and the
// full names of modules_to_save tensors, e.g. the param/ tensors of a training checkpoint.
// tensor returns a tensor by such a name. Every tensor the layout needs must be there, and no
// other, with one exception: LoRA tensors of modules inside modules_to_save (from a trainer that
// adapted them as well) are folded into the fully trained weights, which is exactly how PEFT,
// which leaves those modules unwrapped, must receive them. dtype is Float32 or BFloat16.
func WriteAdapterDir(dir string, layout *Layout, names []string, tensor func(string) (safetensors.TensorView, bool), dtype dtypes.DType) error {
	dt, err := fileDType(dtype)
	if err != nil {
		return err
	}
	var unknown []string
	folded := map[string]bool{} // modules inside modules_to_save with LoRA tensors
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
		if _, ok := layout.LoRA[n]; ok {
			continue
		}
		if _, ok := layout.Saved[n]; ok {
			continue
		}
		if module, _, isLoRA := moduleOf(n); isLoRA && isLinear(layout.Base, module) && insideAny(module, layout.SavedModules) {
			folded[module] = true
			continue
		}
		unknown = append(unknown, n)
	}
	var missing []string
	for k := range layout.LoRA {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	for k := range layout.Saved {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%s are not tensors of an adapter with this configuration (r %d, targets %s, modules_to_save %v): export with the configuration the run was trained with",
			listSome(unknown), layout.Config.R, describeTargets(layout.Config.TargetModules), layout.Config.ModulesToSave)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s missing: export with the configuration the run was trained with (r %d, targets %s, modules_to_save %v)",
			listSome(missing), layout.Config.R, describeTargets(layout.Config.TargetModules), layout.Config.ModulesToSave)
	}
	views := map[string]safetensors.TensorView{}
	add := func(name string, f []float32, shape []int) error {
		v, err := floatsView(f, shape, dt)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		views[PeftPrefix+name] = v
		return nil
	}
	for name, shape := range layout.LoRA {
		v, _ := tensor(name)
		if !slices.Equal(dims(v), shape) {
			return fmt.Errorf("%s has shape %v, the base model needs %v: export with the base model and configuration the run was trained with", name, dims(v), shape)
		}
		f, err := viewFloats(v)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := add(name, f, shape); err != nil {
			return err
		}
	}
	for name, shape := range layout.Saved {
		v, _ := tensor(name)
		if !slices.Equal(dims(v), shape) {
			return fmt.Errorf("%s has shape %v, the base model needs %v: export with the base model the run was trained with", name, dims(v), shape)
		}
		f, err := viewFloats(v)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if module := strings.TrimSuffix(name, ".weight"); module != name && folded[module] {
			if err := mergeModule(f, shape, tensor, module, layout.Config); err != nil {
				return err
			}
			delete(folded, module)
		}
		if err := add(name, f, shape); err != nil {
			return err
		}
	}
	if len(folded) > 0 {
		left := make([]string, 0, len(folded))
		for m := range folded {
			left = append(left, m)
		}
		sort.Strings(left)
		return fmt.Errorf("LoRA tensors of %s have no fully trained weight to fold into", listSome(left))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := model.WriteSafetensors(filepath.Join(dir, WeightsFile), views, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	js, err := layout.PeftConfig().PeftJSON()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ConfigFile), js, 0o644)
}
