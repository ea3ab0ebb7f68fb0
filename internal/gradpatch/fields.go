package gradpatch

import (
	"fmt"
	"reflect"

	"github.com/gomlx/gomlx/pkg/core/graph"
)

// GoMLX v0.26.0 keeps each node's static parameters (DotGeneral axes, Slice bounds, ReduceWindow
// configuration) in an unexported struct behind the unexported field Node.inputs, with no
// accessor. The rules need them, so they are read here with reflection. Only reads are done:
// Len/Index/Int work on unexported fields without unsafe, and nothing is ever written.
//
// The field names below are those of gomlx v0.26.0 (pkg/core/graph/gen_backend_ops.go). If a
// field is missing or has another kind, paramField panics naming it: a wrong gradient would be
// far worse than a loud failure at graph-build time.

// params returns the struct value behind node.inputs.
func params(node *graph.Node) reflect.Value {
	v := reflect.ValueOf(node)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		panic("gradpatch: nil node")
	}
	in := v.Elem().FieldByName("inputs")
	if !in.IsValid() || in.Kind() != reflect.Interface || in.IsNil() {
		panic(fmt.Sprintf("gradpatch: graph.Node has no field \"inputs\" as in gomlx v0.26.0 (node type %s)", node.Type()))
	}
	p := in.Elem()
	if p.Kind() == reflect.Pointer {
		p = p.Elem()
	}
	if p.Kind() != reflect.Struct {
		panic(fmt.Sprintf("gradpatch: inputs of %s node is %s, not a struct as in gomlx v0.26.0", node.Type(), p.Kind()))
	}
	return p
}

func paramField(node *graph.Node, name string, kind reflect.Kind) reflect.Value {
	f := params(node).FieldByName(name)
	if !f.IsValid() {
		panic(fmt.Sprintf("gradpatch: %s node has no parameter %q: the gomlx version differs from the pinned v0.26.0", node.Type(), name))
	}
	if f.Kind() != kind {
		panic(fmt.Sprintf("gradpatch: %s parameter %q is a %s, expected %s (gomlx v0.26.0)", node.Type(), name, f.Kind(), kind))
	}
	return f
}

// intsParam reads a []int parameter.
func intsParam(node *graph.Node, name string) []int {
	f := paramField(node, name, reflect.Slice)
	out := make([]int, f.Len())
	for i := range out {
		e := f.Index(i)
		if e.Kind() != reflect.Int {
			panic(fmt.Sprintf("gradpatch: %s parameter %q has elements of kind %s, expected int", node.Type(), name, e.Kind()))
		}
		out[i] = int(e.Int())
	}
	return out
}

// pairsParam reads a [][2]int parameter (ReduceWindow paddings).
func pairsParam(node *graph.Node, name string) [][2]int {
	f := paramField(node, name, reflect.Slice)
	out := make([][2]int, f.Len())
	for i := range out {
		e := f.Index(i)
		if e.Kind() != reflect.Array || e.Len() != 2 {
			panic(fmt.Sprintf("gradpatch: %s parameter %q is not a [][2]int", node.Type(), name))
		}
		out[i] = [2]int{int(e.Index(0).Int()), int(e.Index(1).Int())}
	}
	return out
}

// intParam reads an integer-kinded parameter (e.g. an enum such as the reduction type).
func intParam(node *graph.Node, name string) int64 {
	f := params(node).FieldByName(name)
	if !f.IsValid() {
		panic(fmt.Sprintf("gradpatch: %s node has no parameter %q: the gomlx version differs from the pinned v0.26.0", node.Type(), name))
	}
	switch f.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return f.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(f.Uint())
	}
	panic(fmt.Sprintf("gradpatch: %s parameter %q is a %s, expected an integer", node.Type(), name, f.Kind()))
}

// dotAxes are the DotGeneral dimension numbers: which axes of each operand are contracted
// (paired by position) and which are batch axes (paired by position).
type dotAxes struct {
	lhsContracting, lhsBatch, rhsContracting, rhsBatch []int
}

func dotGeneralAxes(node *graph.Node) dotAxes {
	return dotAxes{
		lhsContracting: intsParam(node, "lhsContractingAxes"),
		lhsBatch:       intsParam(node, "lhsBatchAxes"),
		rhsContracting: intsParam(node, "rhsContractingAxes"),
		rhsBatch:       intsParam(node, "rhsBatchAxes"),
	}
}

// sliceParams are the per-axis bounds of a Slice node.
type sliceParams struct {
	starts, limits, strides []int
}

func sliceParamsOf(node *graph.Node) sliceParams {
	return sliceParams{
		starts:  intsParam(node, "starts"),
		limits:  intsParam(node, "limits"),
		strides: intsParam(node, "strides"),
	}
}

// windowParams is the configuration of a ReduceWindow node. Empty slices mean the defaults.
type windowParams struct {
	reduction                                       int64
	window, strides, baseDilations, windowDilations []int
	paddings                                        [][2]int
}

func windowParamsOf(node *graph.Node) windowParams {
	return windowParams{
		reduction:       intParam(node, "reductionType"),
		window:          intsParam(node, "windowDimensions"),
		strides:         intsParam(node, "strides"),
		baseDilations:   intsParam(node, "baseDilations"),
		windowDilations: intsParam(node, "windowDilations"),
		paddings:        pairsParam(node, "paddings"),
	}
}
