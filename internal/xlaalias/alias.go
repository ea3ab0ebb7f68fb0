// Package xlaalias makes XLA update a graph's variables in place.
//
// GoMLX v0.26 donates the buffer of every variable a graph changes, but its XLA backend emits no
// input/output aliasing, so XLA plans the new value as a fresh buffer and frees the old one only
// after the call: an optimizer step over 764M trainable float32 parameters then holds masters,
// AdamW moments and accumulators twice (11.4 GiB more at the 8B recipe). Marking each such
// parameter of the StableHLO program with `tf.aliasing_output = k` (the attribute JAX emits for
// donated arguments) lets XLA write the new value into the donated buffer.
//
// The StableHLO function sits in unexported fields (Graph.builder → the xla backend's Builder →
// fn); it is reached with reflection, pinned to gomlx v0.26.0 and go-xla v0.1.4. On another
// backend (the pure Go one, whose variables are updated in place already) Variables does nothing.
package xlaalias

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/gomlx/go-xla/pkg/stablehlo"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Variables aliases, in g, the parameter of every variable g changes to the output that
// context.Exec returns its new value in (the changed variables come first, in the context's
// order). Call it at the end of the graph function, when every update is known.
func Variables(ctx *context.Context, g *graph.Graph) error {
	fn, err := function(g)
	if err != nil || fn == nil {
		return err
	}
	k := 0
	var failed error
	ctx.EnumerateVariables(func(v *context.Variable) {
		if failed != nil || !v.ChangedInGraph(g) {
			return
		}
		param := g.GetParameterByName(v.ParameterName())
		if param == nil {
			failed = fmt.Errorf("xlaalias: variable %s changed but has no parameter in graph %s", v.ScopeAndName(), g.Name())
			return
		}
		i := int(param.GetParameterHandle())
		if i >= len(fn.Inputs) {
			failed = fmt.Errorf("xlaalias: parameter %d of %s has no StableHLO input (gomlx v0.26.0 expected)", i, g.Name())
			return
		}
		in := fn.Inputs[i]
		if in.Attributes == nil {
			in.Attributes = map[string]any{}
		}
		in.Attributes["tf.aliasing_output"] = int32(k)
		k++
	})
	return failed
}

// function returns the StableHLO main function g is being built into, or nil when g's backend
// is not XLA.
func function(g *graph.Graph) (*stablehlo.Function, error) {
	v := reflect.ValueOf(g).Elem().FieldByName("builder")
	if !v.IsValid() {
		return nil, fmt.Errorf("xlaalias: graph.Graph has no field builder (gomlx v0.26.0 expected)")
	}
	if v.IsNil() {
		return nil, fmt.Errorf("xlaalias: graph %s is already compiled", g.Name())
	}
	b := v.Elem()
	if b.Kind() != reflect.Pointer || b.Elem().Kind() != reflect.Struct {
		return nil, nil
	}
	f := b.Elem().FieldByName("fn")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*stablehlo.Function)(nil)) {
		return nil, nil // not the xla backend's builder
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(*stablehlo.Function), nil
}
