package model

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Tensors returns the batch's graph inputs: input ids, attention mask, position ids, targets
// (only with labels), then, with images, pixels, patch mask, vision position ids and image rows.
func (b *Batch) Tensors() []*tensors.Tensor {
	ts := []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(b.InputIDs, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.AttentionMask, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.PositionIDs, b.B, b.T),
	}
	if b.Targets != nil {
		ts = append(ts, tensors.FromFlatDataAndDimensions(b.Targets, b.B, b.T))
	}
	if b.M > 0 {
		ts = append(ts,
			tensors.FromFlatDataAndDimensions(b.Pixels, b.M, b.Channels, b.Hp*b.Patch, b.Wp*b.Patch),
			tensors.FromFlatDataAndDimensions(b.PatchMask, b.M, b.Hp*b.Wp),
			tensors.FromFlatDataAndDimensions(b.VisionPositionIDs, b.M, b.Hp*b.Wp),
			tensors.FromFlatDataAndDimensions(b.ImageRow, b.B, b.T))
	}
	return ts
}

// GraphInputsOf names the nodes of a graph function built from Batch.Tensors.
func GraphInputsOf(nodes []*Node, withTargets bool) GraphInputs {
	in := GraphInputs{InputIDs: nodes[0], AttentionMask: nodes[1], PositionIDs: nodes[2]}
	rest := nodes[3:]
	if withTargets {
		in.Targets, rest = rest[0], rest[1:]
	}
	if len(rest) == 4 {
		in.Pixels, in.PatchMask, in.VisionPositionIDs, in.ImageRow = rest[0], rest[1], rest[2], rest[3]
	}
	return in
}

// Result holds the outputs of one forward pass on the host.
type Result struct {
	Vision, ImageHidden, Logits *tensors.Tensor // Vision/ImageHidden nil without images
	Loss                        *tensors.Tensor // mean loss, nil without labels
}

// Run executes a forward pass of batch (compiling the graph for its shapes).
func (m *Model) Run(backend backends.Backend, batch *Batch) (*Result, error) {
	withTargets := batch.Targets != nil
	withImages := batch.M > 0
	fn := func(ctx *context.Context, nodes []*Node) []*Node {
		out := m.Forward(ctx, GraphInputsOf(nodes, withTargets))
		res := []*Node{out.Logits}
		if withImages {
			res = append(res, out.Vision, out.ImageHidden)
		}
		if withTargets {
			in := GraphInputsOf(nodes, withTargets)
			res = append(res, MeanLoss(CrossEntropy(out.Logits, in.Targets)))
		}
		return res
	}
	exec, err := context.NewExecAny(backend, m.Ctx, fn)
	if err != nil {
		return nil, err
	}
	defer exec.Finalize()
	args := make([]any, 0, 8)
	for _, t := range batch.Tensors() {
		args = append(args, t)
	}
	outs, err := exec.Exec(args...)
	if err != nil {
		return nil, fmt.Errorf("forward pass: %w", err)
	}
	r := &Result{Logits: outs[0]}
	outs = outs[1:]
	if withImages {
		r.Vision, r.ImageHidden, outs = outs[0], outs[1], outs[2:]
	}
	if withTargets {
		r.Loss = outs[0]
	}
	return r, nil
}
