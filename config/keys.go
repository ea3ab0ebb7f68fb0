package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// keySet holds the dotted keys of a config struct: leaves (values a user sets), sections
// (structs, which are set key by key) and the type of every leaf.
type keySet struct {
	leaves   []string
	types    map[string]reflect.Type
	sections map[string]bool
	open     []string // maps and lists of structs: anything below them is checked by the decoder
}

func newKeySet(t reflect.Type) *keySet {
	ks := &keySet{types: map[string]reflect.Type{}, sections: map[string]bool{}}
	ks.walk(t, "")
	sort.Strings(ks.leaves)
	return ks
}

func (ks *keySet) walk(t reflect.Type, prefix string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if opts == "squash" && f.Type.Kind() == reflect.Struct {
			ks.walk(f.Type, prefix) // an embedded config whose keys are ours
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct {
			ks.sections[key] = true
			ks.walk(f.Type, key+".")
			continue
		}
		ks.leaves = append(ks.leaves, key)
		ks.types[key] = f.Type
		if f.Type.Kind() == reflect.Map || (f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct) {
			ks.open = append(ks.open, key)
		}
	}
}

func (ks *keySet) known(k string) bool {
	if _, ok := ks.types[k]; ok {
		return true
	}
	for _, o := range ks.open {
		if strings.HasPrefix(k, o+".") {
			return true
		}
	}
	return false
}

// parseOverride reads the value of --set key=value for the key's type. An empty value is an
// error for numbers and booleans (it would silently become 0 or false), and a section cannot be
// replaced by a value.
func (ks *keySet) parseOverride(k, val string) (any, error) {
	if ks.sections[k] {
		return nil, fmt.Errorf("--set %s=%s: %s is a section; set its keys one by one, e.g. %s", k, val, k, ks.firstIn(k))
	}
	if !ks.known(k) {
		return nil, fmt.Errorf("--set: unknown key %q; did you mean %q?", k, ks.nearest(k))
	}
	t := ks.types[k]
	if t == nil {
		return parseValue(val), nil
	}
	if strings.TrimSpace(val) == "" {
		switch t.Kind() {
		case reflect.String, reflect.Slice, reflect.Map:
			return "", nil
		default:
			return nil, fmt.Errorf("--set %s=: empty value; %s needs %s (drop the --set to keep the default)", k, k, kindName(t))
		}
	}
	if t.Kind() == reflect.String {
		return val, nil // "1e-4" or "true" stay text for a string key
	}
	v := parseValue(val)
	if _, text := v.(string); text && kindName(t) != "a value" {
		return nil, fmt.Errorf("--set %s=%s: %s needs %s", k, val, k, kindName(t))
	}
	return v, nil
}

func (ks *keySet) firstIn(section string) string {
	for _, k := range ks.leaves {
		if strings.HasPrefix(k, section+".") {
			return k + "=…"
		}
	}
	return section + ".<key>=…"
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Uint32, reflect.Uint:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a value"
}

// aliases are the names Hugging Face TrainingArguments, PEFT and transformers' generate use for
// our keys' last part: a user who types theirs is pointed at ours.
var aliases = map[string]string{
	"learning_rate": "lr", "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
	"num_train_epochs": "epochs", "save_steps": "save_every", "eval_steps": "eval_every", "logging_steps": "log_every",
	"save_total_limit": "keep_last", "lora_alpha": "alpha", "lora_dropout": "dropout", "lr_scheduler_type": "lr_scheduler",
	"init_lora_weights": "init", "model_name_or_path": "path", "torch_dtype": "dtype", "max_seq_length": "max_length",
	"warmup": "warmup_steps", "rank": "r", "lora_r": "r", "do_sample": "sample", "max_tokens": "max_new_tokens",
}

// nearest is the known key closest to k: the smallest edit distance between the full dotted keys,
// or between the last parts (ours or an alias of ours), preferring a key in k's own section.
func (ks *keySet) nearest(k string) string {
	section, leaf := splitKey(k)
	best, bestD := "", 1<<30
	for _, c := range ks.leaves {
		cs, cl := splitKey(c)
		d := levenshtein(k, c)
		d = min(d, levenshtein(leaf, cl)+1) // +1: a leaf match ignores the section
		for alias, ours := range aliases {
			if ours == cl {
				d = min(d, levenshtein(leaf, alias)+1)
			}
		}
		if section != "" && cs == section {
			d *= 2 // compare at double resolution so that the own section wins ties only
		} else {
			d = d*2 + 1
		}
		if d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	return best
}

func splitKey(k string) (section, leaf string) {
	i := strings.LastIndexByte(k, '.')
	if i < 0 {
		return "", k
	}
	return k[:i], k[i+1:]
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
