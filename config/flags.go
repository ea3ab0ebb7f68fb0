package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
)

// Flags is a command line whose flags are shorthands for config keys, next to --config FILE and
// --set key=value, which every command has. Parse loads the configuration with the flags given
// on the command line applied last.
type Flags struct {
	*flag.FlagSet
	path     *string
	sets     multiFlag
	keys     *keySet
	defaults reflect.Value
	binds    map[string]string     // flag name → key
	lists    map[string]*multiFlag // repeatable flags of list keys
}

// NewFlags starts the command line of a command whose configuration is the struct defaults
// points to (its current values are the defaults). usage is printed above the flags by -h.
func NewFlags(name, usage string, defaults any) *Flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := &Flags{FlagSet: fs, keys: newKeySet(reflect.TypeOf(defaults).Elem()), defaults: reflect.ValueOf(defaults).Elem(),
		binds: map[string]string{}, lists: map[string]*multiFlag{}}
	f.path = fs.String("config", "", "YAML config file (keys as in configs/*.yaml)")
	fs.Var(&f.sets, "set", "override a config key, key=value (repeatable); environment "+EnvPrefix+"_<KEY> works too, e.g. "+EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(f.keys.leaves[0], ".", "_")))
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimRight(usage, "\n"))
		fmt.Fprintln(fs.Output(), "\nflags (each is a shorthand for the config key in brackets):")
		fs.PrintDefaults()
	}
	return f
}

// Bind adds the flag --name as a shorthand for key; its type and default come from the key's
// field. A list key makes a repeatable flag.
func (f *Flags) Bind(name, key, usage string) {
	t, ok := f.keys.types[key]
	if !ok {
		panic("config: Bind " + name + ": unknown key " + key) // a programming error, caught by every test
	}
	f.binds[name] = key
	usage += " [" + key + "]"
	def := f.field(key)
	switch t.Kind() {
	case reflect.Bool:
		f.Bool(name, def.Bool(), usage)
	case reflect.Slice:
		m := &multiFlag{}
		f.lists[name] = m
		f.Var(m, name, usage+" (repeatable)")
	case reflect.Int, reflect.Int64, reflect.Int32:
		f.Int64(name, def.Int(), usage)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		f.Uint64(name, def.Uint(), usage)
	case reflect.Float64, reflect.Float32:
		f.Float64(name, def.Float(), usage)
	default:
		f.String(name, fmt.Sprint(def.Interface()), usage)
	}
}

// field is the default value of a key.
func (f *Flags) field(key string) reflect.Value {
	v := f.defaults
	for _, part := range strings.Split(key, ".") {
		v = fieldByTag(v, part)
	}
	return v
}

// fieldByTag finds the field tagged name, looking inside squashed structs too.
func fieldByTag(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, opts, _ := strings.Cut(t.Field(i).Tag.Get("mapstructure"), ",")
		if tag == name {
			return v.Field(i)
		}
		if opts == "squash" && t.Field(i).Type.Kind() == reflect.Struct {
			if f := fieldByTag(v.Field(i), name); f.IsValid() {
				return f
			}
		}
	}
	return reflect.Value{}
}

// ErrHelp is returned by Parse when -h or --help was asked for (the usage is already printed).
var ErrHelp = flag.ErrHelp

// Parse reads the command line into dst (the struct given to NewFlags, or another of its type):
// defaults, --config, environment, --set, then the shorthand flags that were given.
func (f *Flags) Parse(args []string, dst any) error {
	if err := f.parseFlags(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (a value with spaces needs quotes: --set 'lora.rank_pattern={v_proj: 4}')", f.Arg(0))
	}
	return f.load(dst)
}

// ParseInterspersed is Parse for commands that take positional arguments, which may come before,
// between or after the flags ("model owner/name --dry-run"); it returns them in order.
func (f *Flags) ParseInterspersed(args []string, dst any) ([]string, error) {
	var pos []string
	for {
		if err := f.parseFlags(args); err != nil {
			return nil, err
		}
		if f.NArg() == 0 {
			break
		}
		pos = append(pos, f.Arg(0))
		args = f.Args()[1:]
	}
	return pos, f.load(dst)
}

func (f *Flags) parseFlags(args []string) error {
	f.SetOutput(io.Discard)
	if err := f.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.SetOutput(os.Stderr)
			f.Usage()
		}
		return err
	}
	return nil
}

func (f *Flags) load(dst any) error {
	sets := append([]string(nil), f.sets...)
	f.Visit(func(fl *flag.Flag) {
		key, ok := f.binds[fl.Name]
		if !ok {
			return
		}
		if m, ok := f.lists[fl.Name]; ok {
			sets = append(sets, key+"="+yamlList(*m))
			return
		}
		sets = append(sets, key+"="+fl.Value.String())
	})
	return Load(dst, *f.path, sets)
}

// DefaultConfig makes path the config file read when --config is not given.
func (f *Flags) DefaultConfig(path string) {
	*f.path = path
	f.Lookup("config").DefValue = path
}

// ConfigPath is the --config value.
func (f *Flags) ConfigPath() string { return *f.path }

// Sets are the --set values.
func (f *Flags) Sets() []string { return f.sets }

// yamlList writes a list of strings as a YAML flow sequence, each quoted.
func yamlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
