package train_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/train"
)

// configs/sft-qlora.yaml is the tutorial's QLoRA recipe: NF4 storage, LoRA (no DoRA) on the text
// model and the connector by regex, nothing fully trained.
func TestQLoRAConfig(t *testing.T) {
	cfg, err := train.LoadConfig(filepath.Join(repoRoot(t), "configs/sft-qlora.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Quantization != "nf4" || cfg.Model.DoubleQuant {
		t.Errorf("model.quantization %q double_quant %v, want nf4 without double quantization", cfg.Model.Quantization, cfg.Model.DoubleQuant)
	}
	if cfg.LoRA.UseDoRA || cfg.LoRA.R != 8 || cfg.LoRA.Alpha != 8 || cfg.LoRA.Dropout != 0.1 || len(cfg.Train.ModulesToSave) != 0 {
		t.Errorf("lora %+v modules_to_save %v: want r=8 alpha=8 dropout 0.1, no DoRA, nothing fully trained", cfg.LoRA, cfg.Train.ModulesToSave)
	}
	if !strings.Contains(cfg.LoRA.TargetModules, "modality_projection|perceiver_resampler") {
		t.Errorf("target_modules %q does not reach the connector", cfg.LoRA.TargetModules)
	}
	if _, err := train.LoadConfig(filepath.Join(repoRoot(t), "configs/sft-qlora.yaml"), []string{"model.quantization=int4"}); err == nil ||
		!strings.Contains(err.Error(), "model.quantization") {
		t.Errorf("model.quantization=int4: error %v, want one naming model.quantization", err)
	}
}
