package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/model"
)

// Variable names inside a targeted module's scope, as PEFT names them in its state dict.
const (
	scopeA    = "lora_A"
	scopeB    = "lora_B"
	magnitude = "lora_magnitude_vector"
)

// Adapter is one LoRA/DoRA adapter attached to a model: its configuration and the modules it
// wraps. Its variables live in the model's context, next to the weight they adapt.
type Adapter struct {
	Config  Config
	Modules []string // targeted module names, sorted
	// Training switches LoRA dropout on; evaluation and export run without it.
	Training bool
	m        *model.Model
}

// LinearModules lists the model's Linear modules (rank-2 ".weight" tensors other than the token
// embedding), which are what PEFT can wrap with a LoRA Linear.
func LinearModules(c model.Config) []model.Param {
	var out []model.Param
	for _, p := range c.Params() {
		if !strings.HasSuffix(p.Name, ".weight") || len(p.Shape) != 2 || strings.HasSuffix(p.Name, "embed_tokens.weight") ||
			strings.HasSuffix(p.Name, "position_embedding.weight") {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Attach creates the adapter's variables for every module cfg targets, initialised as PEFT does
// (B = 0, so the adapted model starts equal to the base), and routes m's Linear through it.
// seed makes the initialisation reproducible.
func Attach(m *model.Model, cfg Config, seed uint64) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Adapter{Config: cfg, m: m}
	saved, err := ModulesToSave(m.Config, cfg.ModulesToSave)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x1d3f1c5))
	for _, p := range LinearModules(m.Config) {
		module := strings.TrimSuffix(p.Name, ".weight")
		if !cfg.Targets(module) {
			continue
		}
		if insideAny(module, saved) {
			// Fully trained modules need no adapter: their weights train directly.
			continue
		}
		a.Modules = append(a.Modules, module)
		out, in := p.Shape[0], p.Shape[1]
		r := cfg.Rank(module)
		scope, _ := model.VariableScope(p.Name)
		mctx := m.Ctx.InAbsPath(scope)
		mctx.In(scopeA).VariableWithValue("weight", initA(cfg.InitLoraWeights, r, in, rng)).SetTrainable(true)
		mctx.In(scopeB).VariableWithValue("weight", tensors.FromShape(shapes.Make(dtypes.Float32, out, r))).SetTrainable(true)
		if cfg.UseDoRA {
			w := m.Variable(p.Name)
			if w == nil || !w.HasValue() {
				return nil, fmt.Errorf("lora: DoRA needs the weights of %s loaded before attaching", module)
			}
			if vals, packed, err := m.DequantizedWeight(p.Name); packed {
				// A 4-bit base: the norms of the weight the layer computes with, as PEFT's DoRA
				// dequantizes a bitsandbytes weight.
				if err != nil {
					return nil, err
				}
				mctx.VariableWithValue(magnitude, rowNormsOf(vals, p.Shape[0], p.Shape[1])).SetTrainable(true)
				continue
			}
			mctx.VariableWithValue(magnitude, rowNorms(w)).SetTrainable(true)
		}
	}
	if len(a.Modules) == 0 {
		return nil, fmt.Errorf("lora: target_modules %s matched no Linear module of the model (names look like %q)",
			describeTargets(cfg.TargetModules), "model.text_model.layers.0.self_attn.q_proj")
	}
	sort.Strings(a.Modules)
	m.Linear = a.Linear
	return a, nil
}

func describeTargets(t TargetModules) string {
	if t.Regex != "" {
		return fmt.Sprintf("regex %q", t.Regex)
	}
	return fmt.Sprintf("%q", t.Names)
}

// initA draws lora_A [r, in] in float32: N(0, 1/r) for "gaussian"; otherwise PEFT's default,
// kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in).
func initA(kind InitKind, r, in int, rng *rand.Rand) *tensors.Tensor {
	t := tensors.FromShape(shapes.Make(dtypes.Float32, r, in))
	tensors.MustMutableFlatData(t, func(f []float32) {
		for i := range f {
			if kind == "gaussian" {
				f[i] = float32(rng.NormFloat64() / float64(r))
			} else {
				bound := 1 / math.Sqrt(float64(in))
				f[i] = float32((2*rng.Float64() - 1) * bound)
			}
		}
	})
	return t
}

// rowNorms is ‖W[o, :]‖₂ for every output row, DoRA's initial magnitude (B = 0 at init).
func rowNorms(w *context.Variable) *tensors.Tensor {
	val, err := w.Value()
	if err != nil {
		panic(err)
	}
	out, in := val.Shape().Dim(0), val.Shape().Dim(1)
	norms := make([]float32, out)
	accumulate := func(get func(i int) float64) {
		for o := 0; o < out; o++ {
			s := 0.0
			for i := 0; i < in; i++ {
				x := get(o*in + i)
				s += x * x
			}
			norms[o] = float32(math.Sqrt(s))
		}
	}
	val.MustConstFlatData(func(flat any) {
		switch f := flat.(type) {
		case []float32:
			accumulate(func(i int) float64 { return float64(f[i]) })
		default:
			accumulate(func(i int) float64 { return model.FloatAt(f, i) })
		}
	})
	return tensors.FromFlatDataAndDimensions(norms, out)
}

// Linear is the model.LinearFunc of an adapted model: the base projection plus, for targeted
// modules, s·B(A(dropout(x))), or DoRA's magnitude-rescaled form.
func (a *Adapter) Linear(ctx *context.Context, module string, x, weight, bias *Node) *Node {
	base := model.PlainLinear(ctx, module, x, weight, bias)
	av := ctx.GetVariableByScopeAndName(ctx.In(scopeA).Scope(), "weight")
	if av == nil {
		return base
	}
	g := x.Graph()
	A := ConvertDType(av.ValueGraph(g), x.DType())
	B := ConvertDType(ctx.GetVariableByScopeAndName(ctx.In(scopeB).Scope(), "weight").ValueGraph(g), x.DType())
	s := a.Config.Scaling(module)
	xd := x
	dropped := a.Training && a.Config.LoraDropout > 0
	if dropped {
		xd = dropout(ctx, x, a.Config.LoraDropout)
	}
	delta := MulScalar(model.LinearCore(model.LinearCore(xd, A), B), s)
	if !a.Config.UseDoRA {
		return Add(base, delta)
	}
	// DoRA: rescale each output row by m / ‖W + s·B·A‖, the norm detached (PEFT, after the DoRA
	// paper §4.3), so no gradient flows through it.
	mag := ctx.GetVariableByScopeAndName(ctx.Scope(), magnitude).ValueGraph(g)
	wf := ConvertDType(weight, dtypes.Float32)
	merged := Add(wf, MulScalar(Einsum("or,ri->oi", ConvertDType(B, dtypes.Float32), ConvertDType(A, dtypes.Float32)), s))
	norm := StopGradient(Sqrt(ReduceSum(Square(merged), 1)))
	scale := ConvertDType(Div(mag, norm), x.DType())
	scale = reshapeLast(scale, x.Rank())
	var baseNoBias *Node
	if dropped {
		baseNoBias = model.LinearCore(xd, weight)
	} else {
		baseNoBias = model.LinearCore(x, weight)
	}
	return Add(base, Add(Mul(AddScalar(scale, -1), baseNoBias), Mul(scale, delta)))
}

// reshapeLast gives v [n] the rank of x, as [1, …, 1, n].
func reshapeLast(v *Node, rank int) *Node {
	dims := make([]int, rank)
	for i := range dims {
		dims[i] = 1
	}
	dims[rank-1] = v.Shape().Dim(0)
	return Reshape(v, dims...)
}

// dropout zeroes each element with probability p and scales the rest by 1/(1−p), drawing from
// the context's RNG state, which checkpoints save so a resumed run draws the same masks.
func dropout(ctx *context.Context, x *Node, p float64) *Node {
	u := ctx.RandomUniform(x.Graph(), shapes.Make(dtypes.Float32, x.Shape().Dimensions...))
	keep := GreaterOrEqual(u, Scalar(x.Graph(), dtypes.Float32, p))
	return Where(keep, MulScalar(x, 1/(1-p)), ZerosLike(x))
}

// Variables returns the adapter's variables by PEFT key (without the base_model.model. prefix).
func (a *Adapter) Variables() map[string]*context.Variable {
	out := map[string]*context.Variable{}
	for _, module := range a.Modules {
		scope, _ := model.VariableScope(module + ".weight")
		for _, sub := range []string{scopeA, scopeB} {
			if v := a.m.Ctx.GetVariableByScopeAndName(scope+"/"+sub, "weight"); v != nil {
				out[module+"."+sub+".weight"] = v
			}
		}
		if v := a.m.Ctx.GetVariableByScopeAndName(scope, magnitude); v != nil {
			out[module+"."+magnitude] = v
		}
	}
	return out
}

func insideAny(module string, prefixes []string) bool {
	for _, p := range prefixes {
		if module == p || strings.HasPrefix(module, p+".") {
			return true
		}
	}
	return false
}
