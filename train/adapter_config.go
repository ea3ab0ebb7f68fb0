package train

import "github.com/idefics2/idefics2/lora"

// AdapterConfig is the PEFT LoraConfig of a run: the trainer attaches it and idefics2-adapter
// export writes it, so a checkpoint is always read with the configuration it was trained with.
// Kaiming is PEFT's init_lora_weights=True (kaiming-uniform A, zero B), the only spelling PEFT
// accepts for it; gaussian is passed by name.
func (c Config) AdapterConfig() lora.Config {
	init := lora.InitKind(c.LoRA.Init)
	if c.LoRA.Init == "kaiming" || c.LoRA.Init == "" {
		init = "true"
	}
	lc := lora.Config{R: c.LoRA.R, LoraAlpha: c.LoRA.Alpha, LoraDropout: c.LoRA.Dropout,
		TargetModules: lora.TargetModules{Regex: c.LoRA.TargetModules, Names: c.LoRA.TargetNames},
		UseDoRA:       c.LoRA.UseDoRA, UseRSLoRA: c.LoRA.UseRSLoRA, InitLoraWeights: init,
		RankPattern: c.LoRA.RankPattern, AlphaPattern: c.LoRA.AlphaPattern,
		ModulesToSave: c.Train.ModulesToSave, Bias: "none", PeftType: "LORA", BaseModel: c.Model.Path}
	if len(lc.TargetModules.Names) > 0 {
		lc.TargetModules.Regex = ""
	}
	return lc
}
