// Package xlastats reads the memory plan XLA makes when it compiles a graph: the bytes of its
// arguments, outputs, temporaries and input/output aliases, as PJRT reports them
// (PJRT_Executable_GetCompiledMemoryStats, filled by go-xla at every compile). These are the
// numbers the device will need, known before anything runs, and the ones the trainer's memory
// guard and idefics2-bench --compile-only report.
//
// GoMLX v0.26 keeps the compiled executable in unexported fields (context.Exec → graph.Exec's
// cache → Graph.executable → the xla backend's Executable → pjrt.LoadedExecutable). They are
// read here with reflection, reads only, pinned to gomlx v0.26.0 and go-xla v0.1.4: a missing
// field is an error naming it, not a wrong number.
package xlastats

import (
	"fmt"
	"reflect"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Graph is the compiled memory plan of one executable.
type Graph struct {
	Name          string `json:"name"`
	ArgumentBytes int64  `json:"argument_bytes"`
	OutputBytes   int64  `json:"output_bytes"`
	TempBytes     int64  `json:"temp_bytes"`
	AliasBytes    int64  `json:"alias_bytes"`
	CodeBytes     int64  `json:"code_bytes"`
}

// Transient is what a call needs beyond its arguments: temporaries and the outputs that do not
// reuse an argument's buffer.
func (g Graph) Transient() int64 { return g.TempBytes + g.OutputBytes - g.AliasBytes }

// ErrNoStats is returned for executables of backends that make no memory plan (the pure Go one).
var ErrNoStats = fmt.Errorf("xlastats: the backend reports no compiled memory statistics (XLA backends do)")

// Plans reports whether be is a backend whose compiled executables carry memory plans (XLA's).
// (Compared by name, gomlx/backends/xla's BackendName: importing that package would tie this
// one to cgo builds.)
func Plans(be backends.Backend) bool { return be.Name() == "xla" }

// Of returns the plans of every graph exec has compiled, in compile order, each named name#i.
func Of(exec *context.Exec, name string) ([]Graph, error) {
	ge, err := field(reflect.ValueOf(exec), "exec")
	if err != nil {
		return nil, err
	}
	cache, err := field(ge, "cache")
	if err != nil {
		return nil, err
	}
	var out []Graph
	for i := 0; i < cache.Len(); i++ {
		g, err := field(cache.Index(i), "graph")
		if err != nil {
			return nil, err
		}
		st, err := graphStats(g)
		if err != nil {
			return nil, err
		}
		st.Name = name
		if cache.Len() > 1 {
			st.Name = fmt.Sprintf("%s#%d", name, i)
		}
		out = append(out, st)
	}
	return out, nil
}

// OfGraph returns the plan of a compiled graph.
func OfGraph(g *graph.Graph, name string) (Graph, error) {
	st, err := graphStats(reflect.ValueOf(g))
	st.Name = name
	return st, err
}

func graphStats(g reflect.Value) (Graph, error) {
	be, err := field(g, "executable")
	if err != nil {
		return Graph{}, err
	}
	for be.Kind() == reflect.Interface {
		if be.IsNil() {
			return Graph{}, fmt.Errorf("xlastats: graph not compiled")
		}
		be = be.Elem()
	}
	if be.Kind() != reflect.Pointer || be.Elem().Kind() != reflect.Struct || !be.Elem().FieldByName("exec").IsValid() {
		return Graph{}, ErrNoStats
	}
	loaded, err := field(be, "exec")
	if err != nil {
		return Graph{}, err
	}
	stats, err := field(loaded, "OnDeviceMemoryUsageStats")
	if err != nil {
		return Graph{}, err
	}
	get := func(name string) (int64, error) {
		f := stats.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Int64 {
			return 0, fmt.Errorf("xlastats: ExecutableMemoryUsageStats.%s missing (go-xla differs from v0.1.4)", name)
		}
		return f.Int(), nil
	}
	var st Graph
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"Inputs", &st.ArgumentBytes}, {"Outputs", &st.OutputBytes}, {"Temporary", &st.TempBytes}, {"Aliases", &st.AliasBytes}, {"GeneratedCode", &st.CodeBytes}} {
		if *f.dst, err = get(f.name); err != nil {
			return Graph{}, err
		}
	}
	return st, nil
}

// field follows pointers and interfaces from v and returns its struct field name.
func field(v reflect.Value, name string) (reflect.Value, error) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return reflect.Value{}, fmt.Errorf("xlastats: nil on the way to field %q", name)
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, fmt.Errorf("xlastats: %s is not a struct on the way to field %q", v.Type(), name)
	}
	f := v.FieldByName(name)
	if !f.IsValid() {
		return reflect.Value{}, fmt.Errorf("xlastats: %s has no field %q (gomlx v0.26.0 / go-xla v0.1.4 expected)", v.Type(), name)
	}
	return f, nil
}
