package train

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/internal/xlastats"
	"github.com/idefics2/idefics2/model"
)

// MemoryPlan is the device memory of the training step as XLA plans it at compile time.
//
// The peak is that of the worst call: every variable stays on the device across the step
// (frozen weights, float32 masters of what trains, AdamW moments, gradient accumulators:
// ResidentBytes); a call adds its non-variable inputs (the batch), its temporaries and its
// outputs that do not reuse an input buffer (XLA's plan counts a variable's new value as a new
// buffer unless it is aliased to the old one).
type MemoryPlan struct {
	ResidentBytes int64            `json:"resident_bytes"`
	Graphs        []xlastats.Graph `json:"graphs"`
	PeakBytes     int64            `json:"device_peak_bytes"`
	PeakGraph     string           `json:"peak_graph"`
}

// Plan compiles the step's graphs for a micro-batch shaped like b (forward and backward, and
// the optimizer step) without running them, and returns XLA's memory plan. The graphs are built
// as the step builds them, from variable shapes only, so the plan of an 8B model fits a small
// host. On a backend that makes no plan (the pure Go one) it returns xlastats.ErrNoStats.
func (s *Stepper) Plan(b *model.Batch) (MemoryPlan, error) {
	var p MemoryPlan
	for v := range s.Model.Ctx.IterVariables() {
		p.ResidentBytes += int64(v.Shape().Memory())
	}
	var inBytes int64
	var inShapes []shapes.Shape
	for _, t := range b.Tensors() {
		inShapes = append(inShapes, t.Shape())
		inBytes += int64(t.Shape().Memory())
	}
	inShapes = append(inShapes, shapes.Make(dtypes.Float32), shapes.Make(dtypes.Float32)) // scale, keep
	acc, err := s.planGraph("accumulate "+shapeKey(b), inShapes, func(ctx *context.Context, in []*graph.Node) []*graph.Node {
		return s.accumulateGraph(ctx, in)
	})
	if err != nil {
		return p, err
	}
	n := len(s.Params)
	apply, err := s.planGraph("apply", []shapes.Shape{shapes.Make(dtypes.Float32, n), shapes.Make(dtypes.Float32, n), shapes.Make(dtypes.Float32)},
		func(ctx *context.Context, in []*graph.Node) []*graph.Node {
			return []*graph.Node{s.applyGraph(ctx, in[0], in[1], in[2])}
		})
	if err != nil {
		return p, err
	}
	for _, c := range []struct {
		g  xlastats.Graph
		in int64
	}{{acc, inBytes}, {apply, 0}} {
		p.Graphs = append(p.Graphs, c.g)
		if peak := p.ResidentBytes + c.in + c.g.Transient(); peak > p.PeakBytes {
			p.PeakBytes, p.PeakGraph = peak, c.g.Name
		}
	}
	return p, nil
}

// planGraph builds fn as context.Exec would (inputs, then the variables it reads; outputs: the
// variables it changes, then fn's results), compiles it and reads its plan.
func (s *Stepper) planGraph(name string, in []shapes.Shape, fn func(*context.Context, []*graph.Node) []*graph.Node) (st xlastats.Graph, err error) {
	g := graph.NewGraph(s.backend, name)
	defer g.Finalize()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("train: building %s: %v", name, r)
		}
	}()
	nodes := make([]*graph.Node, len(in))
	for i, sh := range in {
		nodes[i] = graph.Parameter(g, fmt.Sprintf("input_%d", i), sh)
	}
	ctx := s.Model.Ctx.Reuse()
	results := fn(ctx, nodes)
	var outs []*graph.Node
	ctx.EnumerateVariables(func(v *context.Variable) {
		if v.ChangedInGraph(g) {
			outs = append(outs, v.ValueGraph(g))
		}
	})
	g.Compile(append(outs, results...)...)
	return xlastats.OfGraph(g, name)
}
