package lora

import (
	"encoding/json"
	"errors"
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

// The files of a PEFT adapter directory.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// Layout is what an adapter of a given configuration holds for a given base model: the modules
// it adapts (targeted Linear modules outside modules_to_save, as PEFT wraps them and Attach
// does), the shape of every LoRA tensor (by canonical key: PEFT's saved key without
// "base_model.model."), and the base tensors that modules_to_save trains whole.
type Layout struct {
	Config       Config
	Base         model.Config
	Modules      []string         // adapted modules, sorted
	LoRA         map[string][]int // canonical key → shape: <module>.lora_A.weight, .lora_B.weight, .lora_magnitude_vector
	SavedModules []string         // modules_to_save resolved to full module paths
	Saved        map[string][]int // base tensors inside SavedModules → shape
	narrowed     bool             // the targets also match modules inside modules_to_save
}

// NewLayout computes the layout of an adapter with cfg on a model of configuration base.
func NewLayout(base model.Config, cfg Config) (*Layout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	saved, err := ModulesToSave(base, cfg.ModulesToSave)
	if err != nil {
		return nil, err
	}
	l := &Layout{Config: cfg, Base: base, LoRA: map[string][]int{}, SavedModules: saved, Saved: map[string][]int{}}
	for _, p := range LinearModules(base) {
		module := strings.TrimSuffix(p.Name, ".weight")
		if !cfg.Targets(module) {
			continue
		}
		if insideAny(module, saved) {
			l.narrowed = true
			continue
		}
		l.Modules = append(l.Modules, module)
		out, in, r := p.Shape[0], p.Shape[1], cfg.Rank(module)
		l.LoRA[module+".lora_A.weight"] = []int{r, in}
		l.LoRA[module+".lora_B.weight"] = []int{out, r}
		if cfg.UseDoRA {
			l.LoRA[module+"."+magnitude] = []int{out}
		}
	}
	for _, p := range base.Params() {
		if insideAny(p.Name, saved) {
			l.Saved[p.Name] = p.Shape
		}
	}
	sort.Strings(l.Modules)
	return l, nil
}

// PeftConfig is the adapter_config.json to write for this layout: when the targets also match
// modules inside modules_to_save (which PEFT then leaves unwrapped), the adapted modules are
// listed by full name, so that every reader wraps exactly those.
func (l *Layout) PeftConfig() Config {
	c := l.Config
	if l.narrowed {
		c.TargetModules = TargetModules{Names: append([]string(nil), l.Modules...)}
	}
	return c
}

// wrappedBase returns the shape of a base tensor of an adapted module (its weight or bias).
func (l *Layout) wrappedBase(name string) ([]int, bool) {
	module := name[:strings.LastIndexByte(name, '.')]
	i := sort.SearchStrings(l.Modules, module)
	if i == len(l.Modules) || l.Modules[i] != module {
		return nil, false
	}
	for _, p := range l.Base.Params() {
		if p.Name == name {
			return p.Shape, true
		}
	}
	return nil, false
}

// moduleOf splits a canonical LoRA key into its module and kind (lora_A, lora_B,
// lora_magnitude_vector); ok is false for other keys.
func moduleOf(key string) (module, kind string, ok bool) {
	for _, k := range []string{".lora_A.weight", ".lora_B.weight", "." + magnitude} {
		if strings.HasSuffix(key, k) {
			return strings.TrimSuffix(key, k), strings.TrimSuffix(strings.TrimPrefix(k, "."), ".weight"), true
		}
	}
	return "", "", false
}

// AdapterDir is a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)
// checked against a base model: every tensor is accounted for and has the shape the base needs.
type AdapterDir struct {
	Dir     string
	Layout  *Layout
	Variant string            // how the file names its keys (PEFT's format, or the variant found)
	keys    map[string]string // canonical key → key in the file
	// baseCopies are the base weights of wrapped modules that PEFT saved with the adapter
	// ("<module>.base_layer.weight", by canonical key "<module>.weight"); they replace the base's.
	baseCopies map[string]bool
	ck         *model.Checkpoint
}

// OpenAdapterDir reads and checks the adapter in dir against a model of configuration base.
// Every problem is one line naming the file and what to do about it.
func OpenAdapterDir(dir string, base model.Config) (*AdapterDir, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	if _, err := os.Stat(cfgPath); err != nil {
		if _, e2 := os.Stat(filepath.Join(dir, "config.json")); e2 == nil {
			return nil, fmt.Errorf("%s has config.json but no %s: it is a full model, not a PEFT adapter (pass it as the base model)", dir, ConfigFile)
		}
		return nil, fmt.Errorf("%s: no %s: pass the directory that PeftModel.save_pretrained wrote (%s + %s)", dir, ConfigFile, ConfigFile, WeightsFile)
	}
	cfg, err := ReadConfig(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("%v: only PEFT LoRA/DoRA adapters of Linear layers can be used", err)
	}
	if err := checkUnsupported(cfgPath); err != nil {
		return nil, err
	}
	layout, err := NewLayout(base, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %v: the adapter was made for another model; pass the base model it was trained on (base_model_name_or_path %q)", cfgPath, err, cfg.BaseModel)
	}
	if len(layout.Modules) == 0 {
		return nil, fmt.Errorf("%s: target_modules %s matches no Linear module of this base model (names look like model.text_model.layers.0.self_attn.q_proj): pass the base model it was trained on (base_model_name_or_path %q)",
			cfgPath, describeTargets(cfg.TargetModules), cfg.BaseModel)
	}
	wPath := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(wPath); err != nil {
		if _, e2 := os.Stat(filepath.Join(dir, "adapter_model.bin")); e2 == nil {
			return nil, fmt.Errorf("%s: adapter_model.bin is a PyTorch pickle, which is not read here: save the adapter again with save_pretrained(dir, safe_serialization=True) to get %s", dir, WeightsFile)
		}
		return nil, fmt.Errorf("%s: no %s next to %s: copy the weights file PEFT saved with it", dir, WeightsFile, ConfigFile)
	}
	ck, err := model.OpenSafetensors(wPath)
	if err != nil {
		return nil, fmt.Errorf("%v: the adapter weights are damaged; save or download them again", err)
	}
	a := &AdapterDir{Dir: dir, Layout: layout, keys: map[string]string{}, baseCopies: map[string]bool{}, ck: ck}
	if err := a.check(wPath); err != nil {
		ck.Close()
		return nil, err
	}
	return a, nil
}

func (a *AdapterDir) check(path string) error {
	l := a.Layout
	var unknown, foreign, untargeted, embedding, shapes []string
	prefixed, infix := 0, 0
	names := a.ck.Names()
	for _, key := range names {
		canon := CanonicalKey(key)
		if strings.HasPrefix(key, PeftPrefix) {
			prefixed++
		}
		copied := baseLayer.MatchString(key)
		if !copied && canon != strings.TrimPrefix(key, PeftPrefix) {
			infix++
		}
		if prev, dup := a.keys[canon]; dup {
			return fmt.Errorf("%s: %s and %s are the same tensor under two key spellings: keep one of them", path, prev, key)
		}
		a.keys[canon] = key
		want, ok := l.LoRA[canon]
		if !ok {
			want, ok = l.Saved[canon]
		}
		if !ok && copied {
			want, ok = l.wrappedBase(canon)
			a.baseCopies[canon] = ok
		}
		if !ok {
			switch module, _, isLoRA := moduleOf(canon); {
			case strings.Contains(canon, "lora_embedding_"):
				embedding = append(embedding, key)
			case isLoRA && isLinear(l.Base, module):
				untargeted = append(untargeted, key)
			case isLoRA:
				foreign = append(foreign, key)
			default:
				unknown = append(unknown, key)
			}
			continue
		}
		view, _, _ := a.ck.Tensor(key)
		if got := dims(view); !slices.Equal(got, want) {
			shapes = append(shapes, fmt.Sprintf("%s has shape %v, the base model needs %v", key, got, want))
		}
		switch view.DType() {
		case safetensors.F32, safetensors.BF16, safetensors.F16, safetensors.F64:
		default:
			return fmt.Errorf("%s: %s has dtype %s; adapter tensors must be floating point: save the adapter again from PEFT", path, key, view.DType())
		}
	}
	var missing []string
	for k := range l.LoRA {
		if _, ok := a.keys[k]; !ok {
			missing = append(missing, PeftPrefix+k)
		}
	}
	base := fmt.Sprintf("base_model_name_or_path %q", l.Config.BaseModel)
	switch {
	case len(embedding) > 0:
		return fmt.Errorf("%s: %s: LoRA on embeddings is not supported; train the adapter on Linear modules only", path, listSome(embedding))
	case len(foreign) > 0:
		return fmt.Errorf("%s: %s adapt modules this base model does not have: the adapter belongs to another model; pass the base it was trained on (%s)", path, listSome(foreign), base)
	case len(shapes) > 0:
		return fmt.Errorf("%s: %s: the adapter belongs to another model size or rank; pass the base it was trained on (%s) and the adapter_config.json saved with these weights", path, listSome(shapes), base)
	case len(untargeted) > 0:
		return fmt.Errorf("%s: %s adapt modules that %s does not target: the weights and the config do not belong together; use the adapter_config.json saved with them", path, listSome(untargeted), ConfigFile)
	case len(unknown) > 0:
		return fmt.Errorf("%s: %s are neither LoRA weights nor tensors of modules_to_save %v: the weights and the config do not belong together, or the file is not a PEFT LoRA adapter", path, listSome(unknown), l.Config.ModulesToSave)
	case len(missing) > 0:
		return fmt.Errorf("%s: %s missing although %s targets them: the weights and the config do not belong together; use the adapter_config.json saved with them", path, listSome(missing), ConfigFile)
	}
	switch {
	case len(names) == 0:
		a.Variant = "empty"
	case prefixed == len(names) && infix == 0:
		a.Variant = "PEFT (base_model.model. prefix, no adapter name)"
	case prefixed == 0 && infix == 0:
		a.Variant = "no base_model.model. prefix"
	case prefixed == len(names):
		a.Variant = "adapter-name infix"
	case prefixed == 0:
		a.Variant = "no prefix, adapter-name infix"
	default:
		a.Variant = "mixed key spellings"
	}
	return nil
}

// BaseCopies lists the base weights PEFT saved with the adapter (wrapped embedding-like layers
// such as lm_head), which replace the base model's, by model tensor name.
func (a *AdapterDir) BaseCopies() []string {
	var out []string
	for k, ok := range a.baseCopies {
		if ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Canonical reports whether the file already uses PEFT's saved key format.
func (a *AdapterDir) Canonical() bool {
	for canon, key := range a.keys {
		if key != PeftPrefix+canon && !(a.baseCopies[canon] && strings.HasPrefix(key, PeftPrefix)) {
			return false
		}
	}
	return true
}

// Tensor returns the view of a tensor by canonical key.
func (a *AdapterDir) Tensor(canon string) (safetensors.TensorView, bool) {
	key, ok := a.keys[canon]
	if !ok {
		return safetensors.TensorView{}, false
	}
	v, _, _ := a.ck.Tensor(key)
	return v, true
}

// Keys lists the canonical keys of the file, sorted.
func (a *AdapterDir) Keys() []string {
	out := make([]string, 0, len(a.keys))
	for k := range a.keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// DTypes lists the distinct dtypes of the file's tensors.
func (a *AdapterDir) DTypes() []string {
	seen := map[string]bool{}
	var out []string
	for _, key := range a.keys {
		v, _, _ := a.ck.Tensor(key)
		if s := v.DType().String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// Close unmaps the weights file.
func (a *AdapterDir) Close() error { return a.ck.Close() }

// WriteCanonical writes the adapter to dir in PEFT's saved format: every key
// "base_model.model.<module>.lora_A.weight" etc. (no adapter-name infix), tensors in dtype
// (Float32 or BFloat16; InvalidDType keeps each tensor's dtype, bit for bit), the config
// unchanged.
func (a *AdapterDir) WriteCanonical(dir string, dtype dtypes.DType) error {
	var to safetensors.DType
	keep := dtype == dtypes.InvalidDType
	if !keep {
		var err error
		if to, err = fileDType(dtype); err != nil {
			return err
		}
	}
	if same, _ := sameDir(dir, a.Dir); same {
		return fmt.Errorf("%s: writing the converted adapter over its source is not supported: choose another output directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	views := map[string]safetensors.TensorView{}
	for canon := range a.keys {
		v, _ := a.Tensor(canon)
		if !keep && to != v.DType() {
			f, err := viewFloats(v)
			if err != nil {
				return fmt.Errorf("%s: %w", canon, err)
			}
			if v, err = floatsView(f, dims(v), to); err != nil {
				return err
			}
		}
		key := PeftPrefix + canon
		if a.baseCopies[canon] { // PEFT reads these only under the wrapped module's name
			i := strings.LastIndexByte(key, '.')
			key = key[:i] + ".base_layer" + key[i:]
		}
		views[key] = v
	}
	if err := model.WriteSafetensors(filepath.Join(dir, WeightsFile), views, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(a.Dir, ConfigFile))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644)
}

// checkUnsupported rejects adapter_config.json settings that change which modules are wrapped
// or what they compute in ways this package does not implement.
func checkUnsupported(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	set := func(k string) bool {
		v, ok := raw[k]
		s := strings.TrimSpace(string(v))
		return ok && s != "null" && s != "false" && s != "[]" && s != "{}" && s != `""`
	}
	for _, k := range []string{"layers_to_transform", "layer_replication", "exclude_modules", "target_parameters",
		"trainable_token_indices", "lora_bias", "use_qalora", "alora_invocation_tokens", "use_bdlora"} {
		if set(k) {
			return fmt.Errorf("%s: %s is set, which is not supported here: train the adapter without it, or merge it with PEFT (merge_and_unload) and use the merged model", path, k)
		}
	}
	return nil
}

func isLinear(c model.Config, module string) bool {
	for _, p := range LinearModules(c) {
		if p.Name == module+".weight" {
			return true
		}
	}
	return false
}

func dims(v safetensors.TensorView) []int {
	out := make([]int, len(v.Shape()))
	for i, d := range v.Shape() {
		out[i] = int(d)
	}
	return out
}

// listSome names up to three items and counts the rest.
func listSome(items []string) string {
	sort.Strings(items)
	if len(items) <= 3 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:3], ", "), len(items)-3)
}

func sameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}
