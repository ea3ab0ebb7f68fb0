package train

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/distributed"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// UseDevices runs the step data-parallel over the backend's first n devices (train.devices):
// each micro-batch's rows split over them, weights replicated, the gradient reduced inside the
// graph. With shardOptimizer (train.shard_optimizer) the float32 masters, AdamW moments and
// gradient accumulators of what trains are split over the devices instead of replicated
// (ZeRO-2-like: XLA gathers a master where the forward reads it and reduce-scatters each
// micro-batch's gradient into the accumulator shards). Call it before the first step. n = 1
// keeps the single-device graphs as they are.
func (s *Stepper) UseDevices(n int, shardOptimizer bool) error {
	if n <= 1 {
		return nil
	}
	if have := s.backend.NumDevices(); have < n {
		return fmt.Errorf("train.devices = %d: backend %s has %d device(s)", n, s.backend.Name(), have)
	}
	dp, err := newDataParallel(n, shardOptimizer)
	if err != nil {
		return err
	}
	s.dp = dp
	if shardOptimizer {
		for _, p := range s.Params {
			spec := dp.optimizerSpec(p.Var.Shape().Dimensions)
			// The accumulators too: replicated, every device would hold the whole gradient
			// and all-reduce it each micro-batch (2.9 GiB at the 8b step; see README).
			for _, v := range []*context.Variable{p.Var, p.m, p.v, p.acc} {
				if err := v.SetShardingSpec(spec); err != nil {
					return err
				}
			}
		}
	}
	return s.buildExecs()
}

// Devices is the number of devices a step runs on.
func (s *Stepper) Devices() int {
	if s.dp == nil {
		return 1
	}
	return s.dp.n
}

// buildExecs makes the accumulate and apply executors, distributed over the mesh when there is
// one. Each graph function pins the sharding of its outputs (see pinOutputs).
func (s *Stepper) buildExecs() error {
	var err error
	acc := func(e **context.Exec) func(ctx *context.Context, nodes []*Node) []*Node {
		return func(ctx *context.Context, nodes []*Node) []*Node {
			outs := s.accumulateGraph(ctx, nodes)
			s.pinOutputs(*e, ctx, nodes[0].Graph(), len(outs))
			return outs
		}
	}
	apply := func(ctx *context.Context, decay, stepSize, bc2sqrt *Node) *Node {
		out := s.applyGraph(ctx, decay, stepSize, bc2sqrt)
		s.pinOutputs(s.applyExec, ctx, decay.Graph(), 1)
		return out
	}
	if s.accExec, err = context.NewExecAny(s.backend, s.Model.Ctx, acc(&s.accExec)); err != nil {
		return err
	}
	if s.applyExec, err = context.NewExecAny(s.backend, s.Model.Ctx, apply); err != nil {
		return err
	}
	s.accExec.SetMaxCache(-1)
	s.evalExec = nil
	if s.dp != nil {
		// Batches whose images split over the mesh compile in their own executor: the cache of
		// one is keyed by per-device shapes, which cannot tell the two layouts apart.
		if s.accSplit, err = context.NewExecAny(s.backend, s.Model.Ctx, acc(&s.accSplit)); err != nil {
			return err
		}
		s.accSplit.SetMaxCache(-1)
		s.accSplit.AutoSharding(s.dp.mesh).WithInputShardingSpecs(s.dp.inputSpecs(true)...)
		s.accExec.AutoSharding(s.dp.mesh).WithInputShardingSpecs(s.dp.inputSpecs(false)...)
		r := s.dp.repl
		s.applyExec.AutoSharding(s.dp.mesh).WithInputShardingSpecs(r, r, r)
	}
	return nil
}

// newEvalExec is the forward-only executor, distributed like the step when distributed is set.
func (s *Stepper) newEvalExec(distributed bool) (*context.Exec, error) {
	e, err := context.NewExecAny(s.backend, s.Model.Ctx, func(ctx *context.Context, nodes []*Node) []*Node {
		outs := s.evalGraph(ctx, nodes)
		if distributed {
			s.pinOutputs(s.evalExec, ctx, nodes[0].Graph(), len(outs))
		}
		return outs
	})
	if err != nil {
		return nil, err
	}
	e.SetMaxCache(-1)
	if distributed {
		e.AutoSharding(s.dp.mesh).WithInputShardingSpecs(s.dp.inputSpecs(false)...)
	}
	return e, nil
}

// pinOutputs fixes the sharding of a distributed graph's outputs: each changed variable keeps
// its own sharding (GoMLX reassembles a variable's new shards by its spec, and XLA aliases an
// updated variable to its old buffer only when both are laid out alike), and the graph's own
// results (losses, counts, the gradient norm) are replicated, so device 0 holds them whole.
// context.Exec reads the specs after the graph function returns, so setting them here, once the
// changed variables are known, is in time for the compile.
func (s *Stepper) pinOutputs(e *context.Exec, ctx *context.Context, g *Graph, results int) {
	if s.dp == nil || e == nil {
		return
	}
	e.WithOutputShardingSpecs(s.dp.outputSpecs(ctx, g, results)...)
}

// outputSpecs are the specs of the outputs context.Exec compiles for g: the changed variables
// in the context's order, then results replicated.
func (d *dataParallel) outputSpecs(ctx *context.Context, g *Graph, results int) []*distributed.ShardingSpec {
	var specs []*distributed.ShardingSpec
	ctx.EnumerateVariables(func(v *context.Variable) {
		if v.ChangedInGraph(g) {
			spec := v.ShardingSpec()
			if spec == nil {
				spec = d.repl
			}
			specs = append(specs, spec)
		}
	})
	for range results {
		specs = append(specs, d.repl)
	}
	return specs
}

// stepArgs are the arguments of a step executor for the batch tensors ins and the scalars
// after them: as they are on one device, laid out per device on a mesh (the images split
// over it when splitImages).
func (s *Stepper) stepArgs(ins []*tensors.Tensor, splitImages bool, scalars ...any) ([]any, error) {
	if s.dp == nil {
		args := make([]any, 0, len(ins)+len(scalars))
		for _, t := range ins {
			args = append(args, t)
		}
		return append(args, scalars...), nil
	}
	return s.dp.args(ins, splitImages, scalars)
}

// replicatedArgs repeats args once per device (inputs every device holds whole).
func (s *Stepper) replicatedArgs(args ...any) []any {
	if s.dp == nil {
		return args
	}
	out := make([]any, 0, s.dp.n*len(args))
	for range s.dp.n {
		out = append(out, args...)
	}
	return out
}

// planParameter is a graph input of planGraph: sharded like the step's input i on a mesh.
func (s *Stepper) planParameter(g *Graph, i int, sh shapes.Shape, specs []*distributed.ShardingSpec) *Node {
	name := fmt.Sprintf("input_%d", i)
	if s.dp == nil || specs == nil {
		return Parameter(g, name, sh)
	}
	return ShardedParameter(g, name, sh, specs[min(i, len(specs)-1)])
}

// deviceBytes is the memory one device holds of a tensor shaped sh under spec.
func deviceBytes(sh shapes.Shape, spec *distributed.ShardingSpec) int64 {
	if spec == nil {
		return int64(sh.Memory())
	}
	per := spec.ShardShape(sh)
	if !per.Ok() {
		return int64(sh.Memory())
	}
	return int64(per.Memory())
}
