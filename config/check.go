package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Check validates every field of the struct v points to against its `check` tag, and returns
// the first violation as one line naming the key, the value and what is allowed. Rules, comma
// separated: min=N and max=N (inclusive), gt=N (exclusive), oneof=a|b|c (an empty choice, as in
// oneof=|on|off, allows ""), nonempty. Lists of structs are checked item by item.
func Check(v any) error {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	return checkStruct(rv, "")
}

func checkStruct(rv reflect.Value, prefix string) error {
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if opts == "squash" && f.Type.Kind() == reflect.Struct {
			if err := checkStruct(rv.Field(i), prefix); err != nil {
				return err
			}
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		key, fv := prefix+tag, rv.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct:
			if err := checkStruct(fv, key+"."); err != nil {
				return err
			}
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			for j := 0; j < fv.Len(); j++ {
				if err := checkStruct(fv.Index(j), fmt.Sprintf("%s[%d].", key, j)); err != nil {
					return err
				}
			}
		}
		if rules := f.Tag.Get("check"); rules != "" {
			if err := checkValue(key, fv, rules); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkValue(key string, v reflect.Value, rules string) error {
	for _, rule := range strings.Split(rules, ",") {
		name, arg, _ := strings.Cut(rule, "=")
		var bad string
		switch name {
		case "min", "max", "gt":
			lim, err := strconv.ParseFloat(arg, 64)
			if err != nil {
				return fmt.Errorf("config: %s: bad check rule %q", key, rule)
			}
			if v.Kind() == reflect.Map || v.Kind() == reflect.Slice {
				for _, x := range elems(v) {
					if msg := compare(number(x), name, lim); msg != "" {
						return fmt.Errorf("%s = %v: every value %s", key, display(v), msg)
					}
				}
				continue
			}
			bad = compare(number(v), name, lim)
		case "oneof":
			choices := strings.Split(arg, "|")
			ok := false
			for _, c := range choices {
				ok = ok || v.String() == c
			}
			if !ok {
				bad = "allowed: " + describeChoices(choices)
			}
		case "nonempty":
			if v.Len() == 0 {
				bad = "must not be empty"
			}
		default:
			return fmt.Errorf("config: %s: unknown check rule %q", key, rule)
		}
		if bad != "" {
			return fmt.Errorf("%s = %s: %s", key, display(v), bad)
		}
	}
	return nil
}

func compare(x float64, rule string, lim float64) string {
	switch {
	case rule == "min" && !(x >= lim):
		return fmt.Sprintf("must be ≥ %g", lim)
	case rule == "max" && !(x <= lim):
		return fmt.Sprintf("must be ≤ %g", lim)
	case rule == "gt" && !(x > lim):
		return fmt.Sprintf("must be > %g", lim)
	}
	return ""
}

func number(v reflect.Value) float64 {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(v.Uint())
	case reflect.Float32, reflect.Float64:
		return v.Float()
	}
	return 0
}

func elems(v reflect.Value) []reflect.Value {
	var out []reflect.Value
	if v.Kind() == reflect.Map {
		for _, k := range v.MapKeys() {
			out = append(out, v.MapIndex(k))
		}
		return out
	}
	for i := 0; i < v.Len(); i++ {
		out = append(out, v.Index(i))
	}
	return out
}

func display(v reflect.Value) string {
	if v.Kind() == reflect.String {
		return strconv.Quote(v.String())
	}
	return fmt.Sprint(v.Interface())
}

func describeChoices(c []string) string {
	out := make([]string, 0, len(c))
	for _, s := range c {
		if s == "" {
			s = `"" (unset)`
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}
