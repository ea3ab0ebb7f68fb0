package train_test

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/optim"
	"github.com/idefics2/idefics2/train"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

func fmtInt(k int) string { return strconv.Itoa(k) }

// fixtureBatch reads a fixture's inputs.safetensors into a model batch.
func fixtureBatch(t *testing.T, fx fixtures.Fixture, c model.Config) *model.Batch {
	t.Helper()
	raw, err := fixtures.ReadTensors(filepath.Join(fx.Dir, "inputs.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := fixtures.ModelInputs(raw)
	if err != nil {
		t.Fatalf("%s/inputs.safetensors: %v", fx.Dir, err)
	}
	b, err := model.NewBatch(c, in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureStepper loads a kind=train fixture's model in dtype, attaches its PEFT adapter with the
// fixture's initial weights, marks its modules_to_save for full training, and builds a stepper.
// Options (e.g. useMode) adjust the model before the adapter is attached.
func fixtureStepper(t *testing.T, be backends.Backend, fx fixtures.Fixture, dtype dtypes.DType, opt optim.AdamW, groups []train.Group, options ...func(*model.Model)) (*model.Model, *train.Stepper) {
	t.Helper()
	m, err := model.Load(fx.Dir, dtype)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range options {
		o(m)
	}
	cfg, err := lora.ReadConfig(filepath.Join(fx.Dir, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	adapter, err := lora.Attach(m, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := lora.LoadAdapterWeights(adapter, filepath.Join(fx.Dir, "adapter_init.safetensors")); err != nil {
		t.Fatal(err)
	}
	full, err := lora.ModulesToSave(m.Config, cfg.ModulesToSave)
	if err != nil {
		t.Fatal(err)
	}
	names, err := train.FullTrain(m, full)
	if err != nil {
		t.Fatal(err)
	}
	st, err := train.NewStepper(be, m, adapter, names, opt, groups)
	if err != nil {
		t.Fatal(err)
	}
	return m, st
}

// stepMode is one way of computing the train step: the attention kind and checkpointing.
type stepMode struct {
	name          string
	attention     string
	checkpointing bool
}

// stepModes are the eager reference path and the memory-efficient default (blocked attention
// with several query blocks even at the fixtures' tiny sizes, and checkpointed layers).
var stepModes = []stepMode{
	{"eager", model.AttentionEager, false},
	{"blocked+checkpointing", model.AttentionBlocked, true},
}

// useMode sets the mode on the model, and small attention blocks for the test's duration.
func useMode(t *testing.T, mode stepMode) func(*model.Model) {
	prev := model.AttentionBlockBytes
	model.AttentionBlockBytes = 1 << 10
	t.Cleanup(func() { model.AttentionBlockBytes = prev })
	return func(m *model.Model) { m.Attention, m.Checkpointing = mode.attention, mode.checkpointing }
}
