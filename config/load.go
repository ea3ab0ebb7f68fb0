// Package config is the one way every idefics2 command is configured: a struct of defaults, a
// YAML file (--config), IDEFICS2_* environment variables, --set key=value overrides and the
// command's own flags, which are shorthands for keys. Unknown keys are answered with the
// nearest valid one, and values are checked against the ranges and choices their `check` tags
// declare, so a bad value stops the command with one line instead of running with a default.
package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the environment variable of every key: train.lr is IDEFICS2_TRAIN_LR.
const EnvPrefix = "IDEFICS2"

// Validator is implemented by configs with rules that involve several keys; Load calls it
// after the per-key checks.
type Validator interface{ Validate() error }

// Load fills dst (a pointer to a struct that holds the defaults) from the YAML file at path
// (none when ""), IDEFICS2_* environment variables and the key=value overrides, in increasing
// order of precedence, then checks every value.
func Load(dst any, path string, overrides []string) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.Load needs a pointer to a struct, got %T", dst)
	}
	keys := newKeySet(rv.Elem().Type())
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for _, k := range keys.leaves {
		v.SetDefault(k, nil) // so that AutomaticEnv sees every key
	}
	source := "config"
	if path != "" {
		source = path
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := v.ReadConfig(f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	for _, o := range overrides {
		k, val, ok := strings.Cut(o, "=")
		if !ok {
			return fmt.Errorf("--set %q: want key=value", o)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		parsed, err := keys.parseOverride(k, val)
		if err != nil {
			return err
		}
		v.Set(k, parsed)
	}
	for _, k := range v.AllKeys() {
		if !keys.known(k) {
			return fmt.Errorf("%s: unknown key %q; did you mean %q?", source, k, keys.nearest(k))
		}
	}
	settings := v.AllSettings()
	dropNil(settings)
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: dst, WeaklyTypedInput: true, ErrorUnused: true,
		DecodeHook: mapstructure.StringToSliceHookFunc(","),
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(settings); err != nil {
		return fmt.Errorf("%s: %s", source, decodeError(err))
	}
	if err := Check(dst); err != nil {
		return err
	}
	if val, ok := dst.(Validator); ok {
		return val.Validate()
	}
	return nil
}

// decodeError is the decoder's error on one line, without its preamble.
func decodeError(err error) string {
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "decoding failed due to") {
			continue
		}
		parts = append(parts, strings.TrimPrefix(line, "* "))
	}
	return strings.Join(parts, "; ")
}

// dropNil removes unset keys (and sections left empty), so that the defaults in the struct stay.
func dropNil(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			dropNil(x)
			if len(x) == 0 {
				delete(m, k)
			}
		}
	}
}

// parseValue reads an override's value as YAML would (numbers, booleans, [lists], {maps}).
func parseValue(s string) any {
	var out any
	if err := yaml.Unmarshal([]byte(s), &out); err != nil || out == nil {
		return s
	}
	return out
}
