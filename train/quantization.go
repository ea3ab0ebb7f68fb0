package train

import (
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
)

// quantization is the model's 4-bit storage from model.quantization and model.double_quant.
// Fully trained modules (train.modules_to_save) stay in the compute dtype: their weights train,
// so they cannot be 4-bit (transformers' llm_int8_skip_modules does the same for PEFT's
// modules_to_save).
func quantization(c ModelConfig, mc model.Config, modulesToSave []string) (model.Quantization, error) {
	q, err := model.ParseQuantization(c.Quantization, c.DoubleQuant)
	if err != nil || !q.Enabled() {
		return q, err
	}
	if q.Skip, err = lora.ModulesToSave(mc, modulesToSave); err != nil {
		return q, err
	}
	return q, nil
}
