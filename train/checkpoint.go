package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/cauldron"
	"github.com/idefics2/idefics2/model"
	"github.com/nlpodyssey/safetensors"
)

// State is what a checkpoint stores besides tensors: enough to continue the run bit for bit.
type State struct {
	Step      int             `json:"step"` // optimizer steps done
	Samples   int64           `json:"samples"`
	Cursor    cauldron.Cursor `json:"data_cursor"`
	RNG       []uint64        `json:"rng_state"` // the graph RNG (LoRA dropout)
	Elapsed   float64         `json:"elapsed_seconds"`
	LossCurve []CurvePoint    `json:"loss_curve"`
	RunID     string          `json:"run_id,omitempty"` // run.json's id: --resume takes only its own run's checkpoints
}

// CurvePoint is one logged loss.
type CurvePoint struct {
	Step     int     `json:"step"`
	Loss     float64 `json:"loss"`
	EvalLoss float64 `json:"eval_loss,omitempty"`
}

const (
	checkpointPrefix = "checkpoint-"
	tensorsFile      = "trainer_state.safetensors"
	stateFile        = "trainer_state.json"
	oldSuffix        = ".old" // a checkpoint being replaced (installDir)
)

// SaveCheckpoint writes the trainable tensors, their AdamW moments and state into
// dir/checkpoint-<step>, atomically and durably (a temporary directory, fsynced, renamed into
// place; see installDir), and keeps the newest keep checkpoints.
func (s *Stepper) SaveCheckpoint(dir string, st State, keep int) (string, error) {
	final := filepath.Join(dir, fmt.Sprintf("%s%07d", checkpointPrefix, st.Step))
	tmp := final + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	views := map[string]safetensors.TensorView{}
	for _, p := range s.Params {
		for kind, v := range map[string]*context.Variable{"param": p.Var, "exp_avg": p.m, "exp_avg_sq": p.v} {
			val, err := v.Value()
			if err != nil {
				return "", err
			}
			view, err := model.TensorToView(val, dtypes.Float32)
			if err != nil {
				return "", fmt.Errorf("checkpoint %s: %w", p.Name, err)
			}
			views[kind+"/"+p.Name] = view
		}
	}
	if err := model.WriteSafetensors(filepath.Join(tmp, tensorsFile), views, map[string]string{"format": "idefics2-train"}); err != nil {
		return "", err
	}
	if s.Adapter != nil {
		// The adapter's own config travels with its tensors, so a checkpoint exports on its own.
		js, err := s.Adapter.PeftConfigJSON()
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, "adapter_config.json"), js, 0o644); err != nil {
			return "", err
		}
	}
	st.RNG = s.rngState()
	js, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, stateFile), js, 0o644); err != nil {
		return "", err
	}
	if err := installDir(tmp, final); err != nil {
		return "", err
	}
	prune(dir, keep)
	return final, syncPath(dir)
}

// LoadCheckpoint restores what SaveCheckpoint wrote; the stepper must have been built for the
// same trainable set.
func (s *Stepper) LoadCheckpoint(path string) (State, error) {
	var st State
	js, err := os.ReadFile(filepath.Join(path, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(path, stateFile), err)
	}
	ck, err := model.OpenSafetensors(filepath.Join(path, tensorsFile))
	if err != nil {
		return st, err
	}
	defer ck.Close()
	for _, p := range s.Params {
		for kind, v := range map[string]*context.Variable{"param": p.Var, "exp_avg": p.m, "exp_avg_sq": p.v} {
			view, _, ok := ck.Tensor(kind + "/" + p.Name)
			if !ok {
				return st, fmt.Errorf("checkpoint %s has no %s/%s: it was written for another adapter or modules_to_save", path, kind, p.Name)
			}
			t, err := model.ViewToTensor(view, v.Shape().DType)
			if err != nil {
				return st, err
			}
			if fmt.Sprint(t.Shape().Dimensions) != fmt.Sprint(v.Shape().Dimensions) {
				return st, fmt.Errorf("checkpoint %s: %s/%s has shape %v, the run expects %v", path, kind, p.Name, t.Shape().Dimensions, v.Shape().Dimensions)
			}
			if err := v.SetValue(t); err != nil {
				return st, err
			}
		}
	}
	s.Steps = st.Step
	if len(st.RNG) > 0 {
		if err := s.setRNGState(st.RNG); err != nil {
			return st, err
		}
	}
	return st, nil
}

// LatestCheckpoint returns the newest complete checkpoint under dir, "" when there is none.
func LatestCheckpoint(dir string) string {
	list := checkpoints(dir)
	if len(list) == 0 {
		return ""
	}
	return list[len(list)-1]
}

// checkpoints lists the checkpoints under dir, oldest first. A checkpoint-N.old stands for
// checkpoint-N when the process stopped between the two renames of installDir.
func checkpoints(dir string) []string {
	ents, _ := os.ReadDir(dir)
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = e.IsDir()
	}
	var out []string
	for name, isDir := range names {
		base, old := strings.CutSuffix(name, oldSuffix)
		if !isDir || !strings.HasPrefix(name, checkpointPrefix) || strings.HasSuffix(name, ".tmp") || (old && names[base]) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, name, stateFile)); err == nil {
			out = append(out, filepath.Join(dir, name))
		}
	}
	sort.Strings(out)
	return out
}

func prune(dir string, keep int) {
	if keep <= 0 {
		return
	}
	list := checkpoints(dir)
	for len(list) > keep {
		_ = os.RemoveAll(list[0])
		list = list[1:]
	}
}

func (s *Stepper) rngVar() *context.Variable {
	return s.Model.Ctx.GetVariableByScopeAndName(context.RootScope, context.RNGStateVariableName)
}

func (s *Stepper) rngState() []uint64 {
	v := s.rngVar()
	if v == nil || !v.HasValue() {
		return nil
	}
	val, err := v.Value()
	if err != nil {
		return nil
	}
	return tensors.MustCopyFlatData[uint64](val)
}

func (s *Stepper) setRNGState(state []uint64) error {
	t := tensors.FromFlatDataAndDimensions(append([]uint64(nil), state...), len(state))
	if v := s.rngVar(); v != nil {
		return v.SetValue(t)
	}
	s.Model.Ctx.InAbsPath(context.RootScope).Checked(false).VariableWithValue(context.RNGStateVariableName, t).SetTrainable(false)
	return nil
}
