package train

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/distributed"
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
	if !xlastats.Plans(s.backend) {
		return p, xlastats.ErrNoStats // don't build and compile the step for nothing
	}
	var specs []*distributed.ShardingSpec // per input, on a mesh: the plan is one device's
	if s.dp != nil {
		specs = s.dp.inputSpecs(s.dp.splitsImages(b))
	}
	for v := range s.Model.Ctx.IterVariables() {
		spec := v.ShardingSpec()
		if s.dp == nil {
			spec = nil
		}
		p.ResidentBytes += deviceBytes(v.Shape(), spec)
	}
	var inBytes int64
	var inShapes []shapes.Shape
	for i, t := range b.Tensors() {
		inShapes = append(inShapes, t.Shape())
		var spec *distributed.ShardingSpec
		if specs != nil {
			spec = specs[min(i, len(specs)-1)]
		}
		inBytes += deviceBytes(t.Shape(), spec)
	}
	inShapes = append(inShapes, shapes.Make(dtypes.Float32), shapes.Make(dtypes.Float32)) // scale, keep
	acc, err := s.planGraph("accumulate "+shapeKey(b), inShapes, specs, func(ctx *context.Context, in []*graph.Node) []*graph.Node {
		return s.accumulateGraph(ctx, in)
	})
	if err != nil {
		return p, err
	}
	n := len(s.Params)
	apply, err := s.planGraph("apply", []shapes.Shape{shapes.Make(dtypes.Float32, n), shapes.Make(dtypes.Float32, n), shapes.Make(dtypes.Float32)}, nil,
		func(ctx *context.Context, in []*graph.Node) []*graph.Node {
			return []*graph.Node{s.applyGraph(ctx, in[0], in[1], in[2])}
		})
	if err != nil {
		return p, err
	}
	p.consider(acc, p.ResidentBytes+inBytes)
	p.consider(apply, p.ResidentBytes)
	return p, nil
}

// planGraph builds fn as context.Exec would (inputs, then the variables it reads; outputs: the
// variables it changes, then fn's results), compiles it and reads its plan. On a mesh the
// inputs are sharded by specs (nil: replicated), and the plan XLA reports is one device's.
func (s *Stepper) planGraph(name string, in []shapes.Shape, specs []*distributed.ShardingSpec, fn func(*context.Context, []*graph.Node) []*graph.Node) (st xlastats.Graph, err error) {
	g := graph.NewGraph(s.backend, name)
	defer g.Finalize()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("train: building %s: %v", name, r)
		}
	}()
	if s.dp != nil {
		if err := g.SetAutoSharding(s.dp.mesh); err != nil {
			return st, err
		}
		if specs == nil {
			specs = []*distributed.ShardingSpec{s.dp.repl}
		}
	}
	nodes := make([]*graph.Node, len(in))
	for i, sh := range in {
		nodes[i] = s.planParameter(g, i, sh, specs)
	}
	ctx := s.Model.Ctx.Reuse()
	results := fn(ctx, nodes)
	var outs []*graph.Node
	ctx.EnumerateVariables(func(v *context.Variable) {
		if v.ChangedInGraph(g) {
			outs = append(outs, v.ValueGraph(g))
		}
	})
	var outSpecs []*distributed.ShardingSpec
	if s.dp != nil {
		outSpecs = s.dp.outputSpecs(ctx, g, len(results))
	}
	g.CompileWithSharding(append(outs, results...), outSpecs)
	return xlastats.OfGraph(g, name)
}

// RunPlan is the plan of the graphs the step has already compiled and run (on one device), for
// reporting next to a measured peak without compiling again: the first accumulate graph with
// b's batch bytes, and the optimizer step.
func (s *Stepper) RunPlan(b *model.Batch) (MemoryPlan, error) {
	var p MemoryPlan
	if s.dp != nil {
		return p, fmt.Errorf("train: RunPlan reads one device's graphs; use Plan on a mesh")
	}
	for v := range s.Model.Ctx.IterVariables() {
		p.ResidentBytes += int64(v.Shape().Memory())
	}
	var inBytes int64
	for _, t := range b.Tensors() {
		inBytes += int64(t.Shape().Memory())
	}
	acc, err := xlastats.Of(s.accExec, "accumulate")
	if err != nil {
		return p, err
	}
	apply, err := xlastats.Of(s.applyExec, "apply")
	if err != nil {
		return p, err
	}
	for _, g := range acc[:min(1, len(acc))] {
		p.consider(g, p.ResidentBytes+inBytes)
	}
	for _, g := range apply {
		p.consider(g, p.ResidentBytes)
	}
	return p, nil
}

// consider adds graph g, whose call starts with base bytes in use, to the plan.
func (p *MemoryPlan) consider(g xlastats.Graph, base int64) {
	p.Graphs = append(p.Graphs, g)
	if peak := base + g.Transient(); peak > p.PeakBytes {
		p.PeakBytes, p.PeakGraph = peak, g.Name
	}
}
