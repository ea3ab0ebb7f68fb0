package lora

import (
	"fmt"
	"sort"
	"strings"

	"github.com/idefics2/idefics2/model"
)

// ModulesToSave resolves PEFT's modules_to_save entries to full module paths of the model: an
// entry names every module whose path equals it or ends with "." + it, as PEFT matches them
// ("connector" → "model.connector").
func ModulesToSave(c model.Config, entries []string) ([]string, error) {
	modules := map[string]bool{}
	for _, p := range c.Params() {
		parts := strings.Split(p.Name, ".")
		for i := 1; i < len(parts); i++ {
			modules[strings.Join(parts[:i], ".")] = true
		}
	}
	var out []string
	for _, e := range entries {
		found := false
		for m := range modules {
			if m == e || strings.HasSuffix(m, "."+e) {
				out = append(out, m)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("lora: modules_to_save entry %q matches no module (e.g. \"connector\", \"perceiver_resampler\")", e)
		}
	}
	sort.Strings(out)
	// Drop modules nested inside another selected one.
	var top []string
	for _, m := range out {
		if len(top) > 0 && strings.HasPrefix(m, top[len(top)-1]+".") {
			continue
		}
		top = append(top, m)
	}
	return top, nil
}
