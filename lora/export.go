package lora

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/model"
	"github.com/nlpodyssey/safetensors"
)

// Export writes the adapter as PEFT's save_pretrained does, through the one PEFT writer
// (WriteAdapterDir): adapter_model.safetensors with keys "base_model.model.<module>.lora_A.weight"
// (no adapter-name infix), DoRA magnitudes as "<module>.lora_magnitude_vector", the fully
// trained tensors (modules_to_save) under their original paths, and adapter_config.json.
// dtype is Float32 or BFloat16.
func Export(a *Adapter, dir string, fullTrained []string, dtype dtypes.DType) error {
	layout, err := a.Layout()
	if err != nil {
		return err
	}
	vars := a.Variables()
	for _, name := range fullTrained {
		if vars[name] = a.m.Variable(name); vars[name] == nil {
			return fmt.Errorf("export: %s is not a model tensor", name)
		}
	}
	views := map[string]safetensors.TensorView{}
	names := make([]string, 0, len(vars))
	for name, v := range vars {
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		if views[name], err = model.TensorToView(val, dtypes.Float32); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		names = append(names, name)
	}
	get := func(n string) (safetensors.TensorView, bool) { v, ok := views[n]; return v, ok }
	return WriteAdapterDir(dir, layout, names, get, dtype)
}

// Layout is what the adapter holds on its model (see NewLayout).
func (a *Adapter) Layout() (*Layout, error) { return NewLayout(a.m.Config, a.Config) }

// PeftConfigJSON is the adapter's adapter_config.json, as Export writes it.
func (a *Adapter) PeftConfigJSON() ([]byte, error) {
	l, err := a.Layout()
	if err != nil {
		return nil, err
	}
	return l.PeftConfig().PeftJSON()
}

// PeftJSON renders the config as PEFT's adapter_config.json (the keys PEFT 0.1x writes; readers
// ignore the ones they do not know).
func (c Config) PeftJSON() ([]byte, error) {
	var targets any = c.TargetModules.Regex
	if c.TargetModules.Regex == "" {
		names := append([]string(nil), c.TargetModules.Names...)
		sort.Strings(names)
		targets = names
	}
	var modulesToSave any
	if len(c.ModulesToSave) > 0 {
		modulesToSave = c.ModulesToSave
	}
	rank, alpha := c.RankPattern, c.AlphaPattern
	if rank == nil {
		rank = map[string]int{}
	}
	if alpha == nil {
		alpha = map[string]float64{}
	}
	m := map[string]any{
		"alpha_pattern": alpha,
		"auto_mapping": map[string]string{
			"base_model_class": "Idefics2ForConditionalGeneration",
			"parent_library":   "transformers.models.idefics2.modeling_idefics2",
		},
		"base_model_name_or_path": c.BaseModel,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       c.InitLoraWeights,
		"layer_replication":       nil,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"loftq_config":            map[string]any{},
		"lora_alpha":              c.LoraAlpha,
		"lora_dropout":            c.LoraDropout,
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		"modules_to_save":         modulesToSave,
		"peft_type":               "LORA",
		"r":                       c.R,
		"rank_pattern":            rank,
		"revision":                nil,
		"target_modules":          targets,
		"task_type":               nil,
		"use_dora":                c.UseDoRA,
		"use_rslora":              c.UseRSLoRA,
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
