package optim

import (
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
)

// AdamW holds the hyper-parameters shared by every group.
type AdamW struct {
	Beta1, Beta2, Eps float64
	MaxGradNorm       float64 // 0 disables clipping
}

// Defaults are HF Trainer's: β = (0.9, 0.999), ε = 1e-8, max_grad_norm = 1.
func Defaults() AdamW { return AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1} }

// StepScalars are the per-step numbers torch computes in double precision on the host.
type StepScalars struct {
	Decay    float64 // 1 − lr·weight_decay
	StepSize float64 // lr / (1 − β₁ᵗ)
	BC2Sqrt  float64 // √(1 − β₂ᵗ)
}

// Scalars returns the scalars of optimizer step t (1-based) for a group with lr and wd.
func (o AdamW) Scalars(t int, lr, wd float64) StepScalars {
	return StepScalars{
		Decay:    1 - lr*wd,
		StepSize: lr / (1 - math.Pow(o.Beta1, float64(t))),
		BC2Sqrt:  math.Sqrt(1 - math.Pow(o.Beta2, float64(t))),
	}
}

// ClipByGlobalNorm is clip_grad_norm_: the norm of the per-tensor norms, and every gradient
// scaled by min(1, max/(norm + 1e-6)). Returns the scaled gradients and the pre-clip norm.
func ClipByGlobalNorm(grads []*Node, maxNorm float64) ([]*Node, *Node) {
	g := grads[0].Graph()
	total := Scalar(g, dtypes.Float32, 0)
	for _, gr := range grads {
		n := Sqrt(ReduceAllSum(Square(gr)))
		total = Add(total, Square(n))
	}
	norm := Sqrt(total)
	if maxNorm <= 0 {
		return grads, norm
	}
	coef := Div(Scalar(g, dtypes.Float32, maxNorm), AddScalar(norm, 1e-6))
	coef = Min(coef, OnesLike(coef))
	out := make([]*Node, len(grads))
	for i, gr := range grads {
		out[i] = Mul(gr, coef)
	}
	return out, norm
}

// Update is one AdamW step of param p with gradient grad and moments m, v (all float32),
// following torch's single-tensor implementation: decay the parameter, lerp the first moment,
// update the second, then p −= step_size · m / (√v / √(1−β₂ᵗ) + ε). decay, stepSize and
// bc2sqrt are float32 scalars. Returns the new p, m, v.
func (o AdamW) Update(p, grad, m, v, decay, stepSize, bc2sqrt *Node) (newP, newM, newV *Node) {
	p = Mul(p, decay)
	newM = Add(m, MulScalar(Sub(grad, m), 1-o.Beta1)) // exp_avg.lerp_(grad, 1-β₁)
	newV = Add(MulScalar(v, o.Beta2), MulScalar(Square(grad), 1-o.Beta2))
	denom := AddScalar(Div(Sqrt(newV), bc2sqrt), o.Eps)
	newP = Sub(p, Mul(stepSize, Div(newM, denom)))
	return newP, newM, newV
}
