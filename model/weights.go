package model

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// VariableScope splits an HF tensor name into the context scope and variable name that hold it:
// "model.text_model.norm.weight" lives at scope "/model/text_model/norm" as "weight".
func VariableScope(name string) (scope, varName string) {
	i := strings.LastIndexByte(name, '.')
	return "/" + strings.ReplaceAll(name[:i], ".", "/"), name[i+1:]
}

// TensorName is the inverse of VariableScope.
func TensorName(scope, varName string) string {
	return strings.ReplaceAll(strings.TrimPrefix(scope, "/"), "/", ".") + "." + varName
}

// Variable returns the context variable that holds the HF tensor `name`, or nil.
func (m *Model) Variable(name string) *context.Variable {
	scope, v := VariableScope(name)
	return m.Ctx.GetVariableByScopeAndName(scope, v)
}

// LoadWeights checks ck against the configuration's parameter list and creates one frozen
// variable per tensor, converted to the model's compute dtype. Any missing, unexpected or
// mis-shaped tensor is reported in one error that names the tensor, the file and both shapes.
func (m *Model) LoadWeights(ck *Checkpoint) error {
	if m.Quant.Enabled() || ck.Prequantized() {
		return m.loadWeights4bit(ck)
	}
	want := m.Config.Params()
	expected := map[string]bool{}
	var problems []string
	for _, p := range want {
		expected[p.Name] = true
		view, file, ok := ck.Tensor(p.Name)
		if !ok {
			problems = append(problems, fmt.Sprintf("missing tensor %s %v", p.Name, p.Shape))
			continue
		}
		got := make([]int, len(view.Shape()))
		for i, d := range view.Shape() {
			got[i] = int(d)
		}
		if !slices.Equal(got, p.Shape) {
			problems = append(problems, fmt.Sprintf("tensor %s in %s has shape %v, the config expects %v", p.Name, file, got, p.Shape))
		}
	}
	if err := mismatch(ck, expected, problems); err != nil {
		return err
	}
	for _, p := range want {
		view, file, _ := ck.Tensor(p.Name)
		t, err := ViewToTensor(view, m.DType)
		if err != nil {
			return fmt.Errorf("tensor %s in %s: %w", p.Name, file, err)
		}
		ck.Release(p.Name)
		scope, v := VariableScope(p.Name)
		if existing := m.Ctx.GetVariableByScopeAndName(scope, v); existing != nil {
			if err := existing.SetValue(t); err != nil {
				return fmt.Errorf("tensor %s: %w", p.Name, err)
			}
			continue
		}
		m.Ctx.InAbsPath(scope).VariableWithValue(v, t).SetTrainable(false)
	}
	return nil
}

// DeclareShapes creates every variable with its shape only, without values: the full 8b model
// can be described, counted and compiled for without 16 GB of memory.
func (m *Model) DeclareShapes() {
	if m.Quant.Enabled() {
		m.declareShapes4bit()
		return
	}
	for _, p := range m.Config.Params() {
		scope, v := VariableScope(p.Name)
		if m.Ctx.GetVariableByScopeAndName(scope, v) == nil {
			m.Ctx.InAbsPath(scope).VariableWithShape(v, shapes.Make(m.DType, p.Shape...)).SetTrainable(false)
		}
	}
}

func missingWeight(ctx *context.Context, name string) string {
	return fmt.Sprintf("model: tensor %s was not loaded (call LoadWeights or DeclareShapes first)", TensorName(ctx.Scope(), name))
}

// Model is an Idefics2ForConditionalGeneration: its configuration, the context holding its
// variables, the compute dtype and the Linear every projection calls.
type Model struct {
	Config Config
	Ctx    *context.Context
	DType  dtypes.DType
	Linear LinearFunc
	// Attention is AttentionBlocked (the default, "") or AttentionEager.
	Attention string
	// Checkpointing recomputes the decoder and vision layers in the backward pass of training
	// graphs instead of keeping their activations (see Remat).
	Checkpointing bool
	// Quant stores the frozen Linear weights in 4 bits (set before LoadWeights or DeclareShapes).
	Quant Quantization

	shared map[*context.Variable]bool // variables whose tensors another model holds too (Sibling)
}

// New makes an empty model (no variables yet) computing in dtype (Float32 or BFloat16).
func New(cfg Config, dtype dtypes.DType) *Model {
	return &Model{Config: cfg, Ctx: context.New(), DType: dtype, Linear: PlainLinear}
}

// Load opens dir (config.json + safetensors) and loads it in dtype.
func Load(dir string, dtype dtypes.DType) (*Model, error) {
	cfg, err := LoadConfig(dir + "/config.json")
	if err != nil {
		return nil, err
	}
	ck, err := OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	m := New(cfg, dtype)
	if err := m.LoadWeights(ck); err != nil {
		return nil, err
	}
	return m, nil
}

// mismatch is one error listing problems and the checkpoint's tensors that expected lacks (the
// first five, sorted), or nil when there are none.
func mismatch(ck *Checkpoint, expected map[string]bool, problems []string) error {
	for _, n := range ck.Names() {
		if !expected[n] {
			_, file, _ := ck.Tensor(n)
			problems = append(problems, fmt.Sprintf("unexpected tensor %s in %s", n, file))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	more := ""
	if len(problems) > 5 {
		more = fmt.Sprintf(" (and %d more)", len(problems)-5)
		problems = problems[:5]
	}
	return fmt.Errorf("checkpoint %s does not match its config.json: %s%s", ck.Dir, strings.Join(problems, "; "), more)
}
