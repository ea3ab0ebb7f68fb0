package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Config is the subset of PEFT's LoraConfig that changes the computation, with PEFT's JSON names.
type Config struct {
	R               int                `json:"r"`
	LoraAlpha       float64            `json:"lora_alpha"`
	LoraDropout     float64            `json:"lora_dropout"`
	TargetModules   TargetModules      `json:"target_modules"`
	UseRSLoRA       bool               `json:"use_rslora"`
	UseDoRA         bool               `json:"use_dora"`
	InitLoraWeights InitKind           `json:"init_lora_weights"`
	RankPattern     map[string]int     `json:"rank_pattern"`
	AlphaPattern    map[string]float64 `json:"alpha_pattern"`
	ModulesToSave   []string           `json:"modules_to_save"`
	Bias            string             `json:"bias"`
	FanInFanOut     bool               `json:"fan_in_fan_out"`
	PeftType        string             `json:"peft_type"`
	BaseModel       string             `json:"base_model_name_or_path"`
}

// TargetModules is PEFT's target_modules: a regex string (matched with re.fullmatch against
// every module name) or a list of names (a module matches when its name equals one or ends with
// "." + one).
type TargetModules struct {
	Regex string
	Names []string
}

// UnmarshalJSON accepts a string or a list.
func (t *TargetModules) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	if err := json.Unmarshal(data, &t.Regex); err == nil {
		return nil
	}
	return json.Unmarshal(data, &t.Names)
}

// MarshalJSON writes the form it was given.
func (t TargetModules) MarshalJSON() ([]byte, error) {
	if t.Regex != "" {
		return json.Marshal(t.Regex)
	}
	names := append([]string(nil), t.Names...)
	sort.Strings(names)
	return json.Marshal(names)
}

// InitKind is init_lora_weights: true (kaiming-uniform A, the PEFT default), "gaussian"
// (A ~ N(0, 1/r)) or false (random B too; for tests only).
type InitKind string

// UnmarshalJSON accepts PEFT's bool-or-string.
func (k *InitKind) UnmarshalJSON(data []byte) error {
	var b bool
	if err := json.Unmarshal(data, &b); err == nil {
		*k = InitKind(fmt.Sprint(b))
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	*k = InitKind(s)
	return nil
}

// MarshalJSON writes booleans as booleans.
func (k InitKind) MarshalJSON() ([]byte, error) {
	switch k {
	case "", "true":
		return []byte("true"), nil
	case "false":
		return []byte("false"), nil
	}
	return json.Marshal(string(k))
}

// ReadConfig reads an adapter_config.json. Unknown keys are ignored (PEFT adds keys in every
// release); a non-LoRA adapter is an error.
func ReadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c := Config{}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.PeftType != "" && c.PeftType != "LORA" {
		return c, fmt.Errorf("%s: peft_type %q is not supported (only LORA, with or without use_dora)", path, c.PeftType)
	}
	if c.FanInFanOut {
		return c, fmt.Errorf("%s: fan_in_fan_out adapters (GPT-2 style Conv1D) do not apply to Idefics2", path)
	}
	return c, c.Validate()
}

// Validate checks the fields the computation depends on.
func (c Config) Validate() error {
	if c.R <= 0 {
		return fmt.Errorf("lora: r must be positive, got %d", c.R)
	}
	if c.TargetModules.Regex == "" && len(c.TargetModules.Names) == 0 {
		return fmt.Errorf("lora: target_modules is empty")
	}
	if c.TargetModules.Regex != "" {
		if _, err := regexp.Compile(c.TargetModules.Regex); err != nil {
			return fmt.Errorf("lora: target_modules regex %q: %w", c.TargetModules.Regex, err)
		}
	}
	if c.Bias != "" && c.Bias != "none" {
		return fmt.Errorf("lora: bias %q is not supported (only \"none\")", c.Bias)
	}
	return nil
}

// Targets reports whether the module named `module` gets an adapter.
func (c Config) Targets(module string) bool {
	if c.TargetModules.Regex != "" {
		re := regexp.MustCompile(`^(?:` + c.TargetModules.Regex + `)$`)
		return re.MatchString(module)
	}
	for _, n := range c.TargetModules.Names {
		if module == n || strings.HasSuffix(module, "."+n) {
			return true
		}
	}
	return false
}

// patternFor finds the rank_pattern/alpha_pattern key that applies to module: PEFT matches
// each key as a regex against the end of the module name ("(.*\.)?" + key + "$").
func patternFor[V any](m map[string]V, module string) (V, bool) {
	var zero V
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`); err == nil && re.MatchString(module) {
			return m[k], true
		}
	}
	return zero, false
}

// Rank is r for module (rank_pattern overrides).
func (c Config) Rank(module string) int {
	if r, ok := patternFor(c.RankPattern, module); ok {
		return r
	}
	return c.R
}

// Scaling is lora_alpha / r, or lora_alpha / √r with rsLoRA (alpha_pattern overrides alpha).
func (c Config) Scaling(module string) float64 {
	alpha := c.LoraAlpha
	if a, ok := patternFor(c.AlphaPattern, module); ok {
		alpha = a
	}
	r := float64(c.Rank(module))
	if c.UseRSLoRA {
		return alpha / math.Sqrt(r)
	}
	return alpha / r
}
