package train

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/internal/gradpatch"
	"github.com/idefics2/idefics2/internal/xlaalias"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/optim"
)

// Stepper runs the two graphs of a training step: Accumulate (forward and backward of one
// micro-batch, adding its gradients to float32 accumulators, which the first micro-batch of a
// window overwrites) and Apply (clip, AdamW). Apply's graph does not depend on the batch shape, so it compiles once;
// Accumulate compiles once per bucketed batch shape.
type Stepper struct {
	Model   *model.Model
	Adapter *lora.Adapter
	Opt     optim.AdamW
	Groups  []Group
	Params  []*Param
	Steps   int // optimizer steps done

	backend   backends.Backend
	accExec   *context.Exec
	accSplit  *context.Exec // on a mesh: batches whose images split over it
	applyExec *context.Exec
	evalExec  *context.Exec
	evalOne   *context.Exec // eval of a batch that does not split over the mesh
	compiles  map[string]bool
	fresh     bool          // the accumulators hold nothing of the current window yet
	dp        *dataParallel // nil on one device (see UseDevices)
}

// NewStepper prepares training of the adapter's variables (group 0) and the fully trained
// tensors `full` (group 1).
func NewStepper(be backends.Backend, m *model.Model, adapter *lora.Adapter, full []string, opt optim.AdamW, groups []Group) (*Stepper, error) {
	gradpatch.Install()
	s := &Stepper{Model: m, Adapter: adapter, Opt: opt, Groups: groups, backend: be, compiles: map[string]bool{}, fresh: true}
	if m.Ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName) == nil {
		// Dropout draws from it; checkpointed layers rewind it, so it must exist before the
		// graph is built (a run seeds it from train.seed before this).
		if err := m.Ctx.SetRNGStateFromSeed(0); err != nil {
			return nil, err
		}
	}
	s.Params = collectParams(m, adapter, full)
	if len(s.Params) == 0 {
		return nil, fmt.Errorf("train: nothing to train (no LoRA targets and no modules_to_save)")
	}
	if err := s.buildExecs(); err != nil {
		return nil, err
	}
	return s, nil
}

// accumulateGraph: inputs are the batch tensors, then scale = 1/num_items (the target tokens of
// the whole accumulation window) and keep (0 for a window's first micro-batch, else 1). The
// gradient of sum(nll)·scale is added to keep·accumulators.
// Returns the summed loss and the number of targets of this micro-batch.
func (s *Stepper) accumulateGraph(ctx *context.Context, nodes []*Node) []*Node {
	g := nodes[0].Graph()
	if s.Adapter != nil {
		s.Adapter.Training = true
	}
	ctx.SetTraining(g, true)
	scale, keep := nodes[len(nodes)-2], nodes[len(nodes)-1]
	in := model.GraphInputsOf(nodes[:len(nodes)-2], true)
	out := s.Model.Forward(ctx, in)
	sum, count := model.CrossEntropy(out.Logits, in.Targets)
	loss := Mul(sum, scale)
	vars := make([]*context.Variable, len(s.Params))
	for i, p := range s.Params {
		vars[i] = p.Var
	}
	grads := out.Gradient(loss, vars)
	for i, p := range s.Params {
		// keep is 0 for the first micro-batch of a window: the accumulator is overwritten, so
		// the optimizer step never has to write zeros into it (which made XLA copy every
		// accumulator aside first: 2.85 GiB more at the 8B recipe).
		p.acc.SetValueGraph(Add(Mul(p.acc.ValueGraph(g), keep), ConvertDType(grads[i], dtypes.Float32)))
	}
	aliasUpdates(ctx, g)
	return []*Node{sum, count}
}

// applyGraph: inputs are per-parameter decay factors and step sizes [P] and √(1−β₂ᵗ).
// Returns the gradient norm before clipping.
func (s *Stepper) applyGraph(ctx *context.Context, decay, stepSize, bc2sqrt *Node) *Node {
	g := decay.Graph()
	grads := make([]*Node, len(s.Params))
	for i, p := range s.Params {
		grads[i] = p.acc.ValueGraph(g)
	}
	clipped, norm := optim.ClipByGlobalNorm(grads, s.Opt.MaxGradNorm)
	for i, p := range s.Params {
		at := func(v *Node) *Node { return Reshape(SliceAxis(v, 0, AxisElem(i))) }
		w := p.Var.ValueGraph(g)
		newW, newM, newV := s.Opt.Update(ConvertDType(w, dtypes.Float32), clipped[i], p.m.ValueGraph(g), p.v.ValueGraph(g), at(decay), at(stepSize), bc2sqrt)
		p.Var.SetValueGraph(ConvertDType(newW, w.DType()))
		p.m.SetValueGraph(newM)
		p.v.SetValueGraph(newV)
	}
	aliasUpdates(ctx, g)
	return norm
}

// Accumulate runs forward+backward of one micro-batch. numItems is the number of target tokens
// of the whole accumulation window (HF's num_items_in_batch); it returns this batch's summed loss
// and its target count.
func (s *Stepper) Accumulate(b *model.Batch, numItems float64) (lossSum, count float64, err error) {
	if b.Targets == nil {
		return 0, 0, fmt.Errorf("train: batch has no labels")
	}
	exec, split := s.accExec, false
	if s.dp != nil {
		if err := s.dp.checkBatch(b); err != nil {
			return 0, 0, err
		}
		if split = s.dp.splitsImages(b); split {
			exec = s.accSplit
		}
	}
	if numItems <= 0 {
		numItems = 1
	}
	keep := float32(1)
	if s.fresh {
		keep = 0
	}
	args, err := s.stepArgs(b.Tensors(), split, float32(1/numItems), keep)
	if err != nil {
		return 0, 0, err
	}
	s.compiles[shapeKey(b)] = true
	outs, err := exec.Exec(args...)
	if err != nil {
		return 0, 0, err
	}
	s.fresh = false
	return float64(tensors.ToScalar[float32](outs[0])), float64(tensors.ToScalar[float32](outs[1])), nil
}

// Apply performs one optimizer step with the groups' learning rates lrs and returns the gradient
// norm before clipping.
func (s *Stepper) Apply(lrs []float64) (float64, error) {
	s.Steps++
	decay := make([]float32, len(s.Params))
	step := make([]float32, len(s.Params))
	var bc2 float64
	for i, p := range s.Params {
		wd := 0.0
		if p.Decays {
			wd = s.Groups[p.Group].WeightDecay
		}
		sc := s.Opt.Scalars(s.Steps, lrs[p.Group], wd)
		decay[i], step[i], bc2 = float32(sc.Decay), float32(sc.StepSize), sc.BC2Sqrt
	}
	outs, err := s.applyExec.Exec(s.replicatedArgs(decay, step, float32(bc2))...)
	if err != nil {
		return 0, err
	}
	s.fresh = true
	return float64(tensors.ToScalar[float32](outs[0])), nil
}

// Compiles is the number of distinct micro-batch shapes compiled so far (plus the apply graph).
func (s *Stepper) Compiles() int { return len(s.compiles) + 1 }

func shapeKey(b *model.Batch) string {
	return fmt.Sprintf("%dx%d/%d/%dx%d", b.B, b.T, b.M, b.Hp, b.Wp)
}

// evalGraph is the forward pass without dropout: the summed loss and the target count.
func (s *Stepper) evalGraph(ctx *context.Context, nodes []*Node) []*Node {
	if s.Adapter != nil {
		s.Adapter.Training = false
	}
	in := model.GraphInputsOf(nodes, true)
	out := s.Model.Forward(ctx, in)
	sum, count := model.CrossEntropy(out.Logits, in.Targets)
	return []*Node{sum, count}
}

// EvalLoss returns the summed loss and target count of a batch, without touching gradients.
func (s *Stepper) EvalLoss(b *model.Batch) (sum, count float64, err error) {
	e, dp := &s.evalExec, s.dp
	if dp != nil && dp.checkBatch(b) != nil {
		// A short last batch runs whole on one device: the variables' shards are gathered.
		e, dp = &s.evalOne, nil
	}
	if *e == nil {
		if *e, err = s.newEvalExec(dp != nil); err != nil {
			return 0, 0, err
		}
	}
	args := []any{}
	for _, t := range b.Tensors() {
		args = append(args, t)
	}
	if dp != nil {
		if args, err = dp.args(b.Tensors(), false, nil); err != nil {
			return 0, 0, err
		}
	}
	outs, err := (*e).Exec(args...)
	if err != nil {
		return 0, 0, err
	}
	return float64(tensors.ToScalar[float32](outs[0])), float64(tensors.ToScalar[float32](outs[1])), nil
}

// aliasUpdates lets XLA write every updated variable (accumulators; masters and moments) into
// its old buffer, so a step holds one copy of the training state, not two.
func aliasUpdates(ctx *context.Context, g *Graph) {
	if err := xlaalias.Variables(ctx, g); err != nil {
		panic(err)
	}
}
