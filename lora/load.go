package lora

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/idefics2/idefics2/model"
)

// PeftPrefix is what PEFT prepends to every key of adapter_model.safetensors.
const PeftPrefix = "base_model.model."

// adapterInfix matches an adapter-name infix in a key, e.g. ".lora_A.default.weight".
var adapterInfix = regexp.MustCompile(`\.(lora_A|lora_B|lora_magnitude_vector)\.[A-Za-z0-9_\-]+(\.weight)?$`)

// baseLayer matches the frozen weight of a wrapped module, which PEFT also saves when the
// targets include an embedding-like layer (lm_head): "lm_head.base_layer.weight".
var baseLayer = regexp.MustCompile(`\.base_layer\.(weight|bias)$`)

// CanonicalKey brings the key variants found in the wild to our naming (PEFT's saved key without
// its prefix): with or without "base_model.model.", with or without an adapter-name infix. A
// wrapped module's saved base weight ("<module>.base_layer.weight") maps to the model tensor
// it replaces ("<module>.weight").
func CanonicalKey(key string) string {
	key = strings.TrimPrefix(key, PeftPrefix)
	key = strings.Replace(key, ".modules_to_save.default.", ".", 1)
	key = baseLayer.ReplaceAllString(key, ".$1")
	if m := adapterInfix.FindStringSubmatchIndex(key); m != nil {
		kind := key[m[2]:m[3]]
		if kind == "lora_magnitude_vector" {
			return key[:m[0]] + ".lora_magnitude_vector"
		}
		return key[:m[0]] + "." + kind + ".weight"
	}
	return key
}

// LoadAdapterWeights sets the adapter's variables (and any fully trained base tensors found in
// the file, as PEFT stores modules_to_save) from a safetensors file of PEFT's format. Every
// adapter variable must be present with its shape; unknown keys are an error naming them.
func LoadAdapterWeights(a *Adapter, path string) error {
	ck, err := model.OpenSafetensors(path)
	if err != nil {
		return err
	}
	defer ck.Close()
	vars := a.Variables()
	seen := map[string]bool{}
	var problems []string
	for _, key := range ck.Names() {
		name := CanonicalKey(key)
		view, _, _ := ck.Tensor(key)
		v, ok := vars[name]
		if !ok {
			v = a.m.Variable(name) // a modules_to_save tensor of the base model
			if v == nil {
				problems = append(problems, fmt.Sprintf("unknown tensor %s", key))
				continue
			}
		}
		want := v.Shape().Dimensions
		got := make([]int, len(view.Shape()))
		for i, d := range view.Shape() {
			got[i] = int(d)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			problems = append(problems, fmt.Sprintf("tensor %s has shape %v, the adapter expects %v", key, got, want))
			continue
		}
		if err := model.CheckFiniteView(key, path, view); err != nil {
			return err
		}
		t, err := model.ViewToTensor(view, v.Shape().DType)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, key, err)
		}
		if err := v.SetValue(t); err != nil {
			return err
		}
		seen[name] = true
	}
	for name := range vars {
		if !seen[name] {
			problems = append(problems, "missing tensor "+PeftPrefix+name)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return fmt.Errorf("%s does not match the adapter config: %s", path, strings.Join(problems, "; "))
	}
	return nil
}
