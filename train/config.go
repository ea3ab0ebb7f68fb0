package train

import (
	"fmt"

	"github.com/idefics2/idefics2/cauldron"
	"github.com/idefics2/idefics2/config"
	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/model"
)

// Config is a training run, as written in configs/*.yaml. Every key has a default here, and an
// unknown key is an error naming the nearest valid one.
type Config struct {
	Backend string      `mapstructure:"backend"` // "" = $GOMLX_BACKEND, else XLA if a plugin loads, else pure Go
	Model   ModelConfig `mapstructure:"model"`
	Data    DataConfig  `mapstructure:"data"`
	LoRA    LoRAConfig  `mapstructure:"lora"`
	Train   TrainConfig `mapstructure:"train"`
	// Source is the config file the run was read from ("" for none), for the run's plot.
	Source string `mapstructure:"-"`
}

// ModelConfig says which checkpoint to fine-tune and in which precision.
type ModelConfig struct {
	Path      string `mapstructure:"path"`                                 // HF directory: config.json + safetensors (+ tokenizer, processor files)
	Tokenizer string `mapstructure:"tokenizer"`                            // directory with tokenizer.json; "" = Path
	DType     string `mapstructure:"dtype" check:"oneof=float32|bfloat16"` // float32 | bfloat16 (compute dtype; trained tensors keep float32 masters)
	// PerceiverEps pins the perceiver RMSNorm epsilon (1e-5 = as trained; 0 = what config.json resolves to).
	PerceiverEps float64 `mapstructure:"perceiver_rms_norm_eps" check:"min=0"`
	// Tiny, when set, builds a random model of that size at Path if Path holds no checkpoint
	// (the embedded default; see TinyConfig).
	Tiny bool `mapstructure:"build_tiny_if_missing"`
	// Attention: blocked (query blocks, probabilities-only backward; the default) or eager (HF's
	// eager attention as written, the reference).
	Attention string `mapstructure:"attention" check:"oneof=blocked|eager"`
	// Quantization keeps the frozen Linear weights in bitsandbytes' 4-bit format (QLoRA): nf4 |
	// fp4 | none. DoubleQuant also quantizes their scales (bnb_4bit_use_double_quant).
	Quantization string `mapstructure:"quantization" check:"oneof=none|nf4|fp4"`
	DoubleQuant  bool   `mapstructure:"double_quant"`
}

// DataConfig describes the training and evaluation data and how samples become batches.
type DataConfig struct {
	Train            []SourceConfig `mapstructure:"train"`
	Eval             []SourceConfig `mapstructure:"eval"`
	Seed             uint64         `mapstructure:"seed"`
	ShuffleWindow    int            `mapstructure:"shuffle_window" check:"min=0"`
	MaxLength        int            `mapstructure:"max_length" check:"min=1"`
	Overflow         string         `mapstructure:"overflow" check:"oneof=skip|drop_turns"` // skip | drop_turns
	Labels           string         `mapstructure:"labels" check:"oneof=answers|all"`       // answers | all
	SeqBuckets       []int          `mapstructure:"seq_buckets" check:"gt=0"`
	ImageBuckets     []int          `mapstructure:"image_buckets" check:"gt=0"`
	DoImageSplitting bool           `mapstructure:"do_image_splitting"`
	LongestEdge      int            `mapstructure:"longest_edge" check:"min=1"`
	ShortestEdge     int            `mapstructure:"shortest_edge" check:"min=1"`
	Workers          int            `mapstructure:"workers" check:"min=0"`
	// MaxImagePixels refuses (skips, counted as bad_image) images declaring more pixels, as
	// Pillow's decompression-bomb check does; 0: no limit.
	MaxImagePixels int64 `mapstructure:"max_image_pixels" check:"min=0"`
}

// SourceConfig is one dataset of a mixture.
type SourceConfig struct {
	Name string `mapstructure:"name"`
	// Kind: cauldron (hub layout <path>/<subset>/train-*.parquet), custom (parquet or JSONL files
	// matching path, columns named or guessed), docvqa or textvqa (lmms-lab layouts under path).
	Kind    string           `mapstructure:"kind" check:"oneof=|cauldron|custom|docvqa|textvqa"`
	Path    string           `mapstructure:"path"`
	Subsets []string         `mapstructure:"subsets"`
	Split   string           `mapstructure:"split"` // docvqa/textvqa: validation (default), train, test
	Columns cauldron.Columns `mapstructure:"columns"`
	Weight  float64          `mapstructure:"weight" check:"min=0"`
}

// LoRAConfig is PEFT's LoraConfig.
type LoRAConfig struct {
	R             int      `mapstructure:"r" check:"min=0"` // 0 = no LoRA (only modules_to_save train)
	Alpha         float64  `mapstructure:"alpha" check:"gt=0"`
	Dropout       float64  `mapstructure:"dropout" check:"min=0,max=0.999"`
	TargetModules string   `mapstructure:"target_modules"` // regex (re.fullmatch on module names)
	TargetNames   []string `mapstructure:"target_names"`   // or a list of names
	UseDoRA       bool     `mapstructure:"use_dora"`
	UseRSLoRA     bool     `mapstructure:"use_rslora"`
	Init          string   `mapstructure:"init" check:"oneof=gaussian|kaiming"` // gaussian | kaiming (PEFT's default, init_lora_weights=true)
	// RankPattern and AlphaPattern override r and alpha per module (PEFT's rank_pattern and
	// alpha_pattern: keys match the end of a module name).
	RankPattern  map[string]int     `mapstructure:"rank_pattern" check:"gt=0"`
	AlphaPattern map[string]float64 `mapstructure:"alpha_pattern" check:"gt=0"`
}

// TrainConfig holds the optimisation and the run's bookkeeping.
type TrainConfig struct {
	ModulesToSave []string `mapstructure:"modules_to_save"` // fully trained modules
	LR            float64  `mapstructure:"lr" check:"gt=0"`
	FullLR        float64  `mapstructure:"modules_to_save_lr" check:"min=0"` // 0 = LR
	WeightDecay   float64  `mapstructure:"weight_decay" check:"min=0"`
	Beta1         float64  `mapstructure:"adam_beta1" check:"min=0,max=0.999999"`
	Beta2         float64  `mapstructure:"adam_beta2" check:"min=0,max=0.999999"`
	Eps           float64  `mapstructure:"adam_epsilon" check:"gt=0"`
	MaxGradNorm   float64  `mapstructure:"max_grad_norm" check:"min=0"` // 0 = no clipping
	Scheduler     string   `mapstructure:"lr_scheduler" check:"oneof=linear|cosine|constant|constant_with_warmup"`
	WarmupSteps   int      `mapstructure:"warmup_steps" check:"min=0"`
	MaxSteps      int      `mapstructure:"max_steps" check:"min=0"`
	Epochs        int      `mapstructure:"epochs" check:"min=0"` // used when max_steps is 0
	BatchSize     int      `mapstructure:"batch_size" check:"min=1"`
	GradAccum     int      `mapstructure:"grad_accum" check:"min=1"`
	EvalEvery     int      `mapstructure:"eval_every" check:"min=0"`
	EvalBatches   int      `mapstructure:"eval_batches" check:"min=0"`
	SaveEvery     int      `mapstructure:"save_every" check:"min=0"`
	KeepLast      int      `mapstructure:"keep_last" check:"min=0"`
	LogEvery      int      `mapstructure:"log_every" check:"min=0"`
	OutputDir     string   `mapstructure:"output_dir" check:"nonempty"`
	Seed          uint64   `mapstructure:"seed"`
	ProgressBar   bool     `mapstructure:"progress_bar"`
	// GradientCheckpointing recomputes each decoder (and vision) layer in the backward pass,
	// keeping only layer inputs: HF's gradient_checkpointing, on by default.
	GradientCheckpointing bool `mapstructure:"gradient_checkpointing"`
	// MemoryGuard compiles the step for the largest batch shape before step 1, prints XLA's
	// memory plan and refuses a plan over the device's memory (DeviceMemoryGiB, or the GPU's as
	// nvidia-smi reports it; unknown on CPUs: printed only).
	MemoryGuard     bool    `mapstructure:"memory_guard"`
	DeviceMemoryGiB float64 `mapstructure:"device_memory_gib" check:"min=0"`
	// GenerateEvery scores generated answers (GenerateEval: a DocVQA/TextVQA preset on a
	// subset, e.g. limit 50) every that many optimizer steps; 0 = never.
	GenerateEvery int         `mapstructure:"generate_eval_every" check:"min=0"`
	GenerateEval  eval.Config `mapstructure:"generate_eval"`
	// OverwriteOutputDir deletes an earlier run found in OutputDir (HF's overwrite_output_dir);
	// without it a fresh run refuses such a directory. The --overwrite flag sets it.
	OverwriteOutputDir bool `mapstructure:"overwrite_output_dir"`
	// Devices runs each step data-parallel over this many of the backend's devices ("all": every
	// one); batch_size is the global micro-batch and must divide by it. ShardOptimizer splits the
	// float32 masters, AdamW moments and gradient accumulators over them instead of replicating
	// them.
	Devices        string `mapstructure:"devices"`
	ShardOptimizer bool   `mapstructure:"shard_optimizer"`
}

// Defaults are HF Trainer's where it has one, and the Idefics2 tutorial's LoRA otherwise.
func Defaults() Config {
	return Config{
		Model: ModelConfig{DType: "bfloat16", PerceiverEps: 1e-5, Attention: model.AttentionBlocked, Quantization: "none", DoubleQuant: true},
		Data: DataConfig{Seed: 42, ShuffleWindow: 4, MaxLength: 2048, Overflow: "skip", Labels: "answers",
			SeqBuckets: []int{256, 512, 1024, 2048}, ImageBuckets: []int{378, 490, 616, 742, 868, 980},
			LongestEdge: 980, ShortestEdge: 378, Workers: 2, MaxImagePixels: data.DefaultMaxImagePixels},
		LoRA: LoRAConfig{R: 8, Alpha: 8, Dropout: 0.1, Init: "gaussian",
			TargetModules: `.*(text_model|modality_projection|perceiver_resampler).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$`},
		Train: TrainConfig{LR: 1e-4, WeightDecay: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1,
			Scheduler: "linear", WarmupSteps: 50, Epochs: 2, BatchSize: 2, GradAccum: 8, EvalBatches: 8,
			SaveEvery: 250, KeepLast: 2, LogEvery: 1, OutputDir: "runs/sft", Seed: 42, ProgressBar: true,
			GradientCheckpointing: true, MemoryGuard: true, Devices: "1"},
	}
}

// LoadConfig reads a YAML config over the defaults, applies `key=value` overrides and
// IDEFICS2_* environment variables (IDEFICS2_TRAIN_LR=…), rejects unknown keys and checks values.
func LoadConfig(path string, overrides []string) (Config, error) {
	cfg := Defaults()
	err := config.Load(&cfg, path, overrides)
	cfg.Source = path
	return cfg, err
}

// Validate checks what involves several keys; single values are checked by their `check` tags.
func (c Config) Validate() error {
	switch {
	case c.Model.Path == "":
		return fmt.Errorf("model.path is empty: point it at an HF Idefics2 directory (config.json + safetensors)")
	case len(c.Data.Train) == 0:
		return fmt.Errorf("data.train is empty: list at least one dataset")
	case c.Train.MaxSteps <= 0 && c.Train.Epochs <= 0:
		return fmt.Errorf("train.max_steps and train.epochs are both 0: set one of them")
	}
	if n, err := ParseDevices(c.Train.Devices); err != nil {
		return err
	} else if n > 1 && c.Train.BatchSize%n != 0 {
		return fmt.Errorf("train.batch_size = %d does not split over train.devices = %d: the per-device batch must be whole (make batch_size a multiple of %d)", c.Train.BatchSize, n, n)
	}
	return model.ValidAttention(c.Model.Attention)
}
