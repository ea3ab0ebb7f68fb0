package train

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/idefics2/idefics2/cauldron"
	"github.com/idefics2/idefics2/eval"
	"github.com/spf13/viper"
)

// Config is a training run, as written in configs/*.yaml. Every key has a default here, and an
// unknown key is an error naming the nearest valid one.
type Config struct {
	Backend string      `mapstructure:"backend"` // "" = $GOMLX_BACKEND, else XLA if a plugin loads, else pure Go
	Model   ModelConfig `mapstructure:"model"`
	Data    DataConfig  `mapstructure:"data"`
	LoRA    LoRAConfig  `mapstructure:"lora"`
	Train   TrainConfig `mapstructure:"train"`
}

// ModelConfig says which checkpoint to fine-tune and in which precision.
type ModelConfig struct {
	Path      string `mapstructure:"path"`      // HF directory: config.json + safetensors (+ tokenizer, processor files)
	Tokenizer string `mapstructure:"tokenizer"` // directory with tokenizer.json; "" = Path
	DType     string `mapstructure:"dtype"`     // float32 | bfloat16 (compute dtype; trained tensors keep float32 masters)
	// PerceiverEps pins the perceiver RMSNorm epsilon (1e-5 = as trained; 0 = what config.json resolves to).
	PerceiverEps float64 `mapstructure:"perceiver_rms_norm_eps"`
	// Tiny, when set, builds a random model of that size at Path if Path holds no checkpoint
	// (the embedded default; see TinyConfig).
	Tiny bool `mapstructure:"build_tiny_if_missing"`
	// Quantization keeps the frozen Linear weights in bitsandbytes' 4-bit format (QLoRA): nf4 |
	// fp4 | none. DoubleQuant also quantizes their scales (bnb_4bit_use_double_quant).
	Quantization string `mapstructure:"quantization"`
	DoubleQuant  bool   `mapstructure:"double_quant"`
}

// DataConfig describes the training and evaluation data and how samples become batches.
type DataConfig struct {
	Train            []SourceConfig `mapstructure:"train"`
	Eval             []SourceConfig `mapstructure:"eval"`
	Seed             uint64         `mapstructure:"seed"`
	ShuffleWindow    int            `mapstructure:"shuffle_window"`
	MaxLength        int            `mapstructure:"max_length"`
	Overflow         string         `mapstructure:"overflow"` // skip | drop_turns
	Labels           string         `mapstructure:"labels"`   // answers | all
	SeqBuckets       []int          `mapstructure:"seq_buckets"`
	ImageBuckets     []int          `mapstructure:"image_buckets"`
	DoImageSplitting bool           `mapstructure:"do_image_splitting"`
	LongestEdge      int            `mapstructure:"longest_edge"`
	ShortestEdge     int            `mapstructure:"shortest_edge"`
	Workers          int            `mapstructure:"workers"`
}

// SourceConfig is one dataset of a mixture.
type SourceConfig struct {
	Name string `mapstructure:"name"`
	// Kind: cauldron (hub layout <path>/<subset>/train-*.parquet), custom (parquet or JSONL files
	// matching path, columns named or guessed), docvqa or textvqa (lmms-lab layouts under path).
	Kind    string           `mapstructure:"kind"`
	Path    string           `mapstructure:"path"`
	Subsets []string         `mapstructure:"subsets"`
	Split   string           `mapstructure:"split"` // docvqa/textvqa: validation (default), train, test
	Columns cauldron.Columns `mapstructure:"columns"`
	Weight  float64          `mapstructure:"weight"`
}

// LoRAConfig is PEFT's LoraConfig.
type LoRAConfig struct {
	R             int      `mapstructure:"r"`
	Alpha         float64  `mapstructure:"alpha"`
	Dropout       float64  `mapstructure:"dropout"`
	TargetModules string   `mapstructure:"target_modules"` // regex (re.fullmatch on module names)
	TargetNames   []string `mapstructure:"target_names"`   // or a list of names
	UseDoRA       bool     `mapstructure:"use_dora"`
	UseRSLoRA     bool     `mapstructure:"use_rslora"`
	Init          string   `mapstructure:"init"` // gaussian | kaiming (PEFT's default, init_lora_weights=true)
	// RankPattern and AlphaPattern override r and alpha per module (PEFT's rank_pattern and
	// alpha_pattern: keys match the end of a module name).
	RankPattern  map[string]int     `mapstructure:"rank_pattern"`
	AlphaPattern map[string]float64 `mapstructure:"alpha_pattern"`
}

// TrainConfig holds the optimisation and the run's bookkeeping.
type TrainConfig struct {
	ModulesToSave []string `mapstructure:"modules_to_save"` // fully trained modules
	LR            float64  `mapstructure:"lr"`
	FullLR        float64  `mapstructure:"modules_to_save_lr"` // 0 = LR
	WeightDecay   float64  `mapstructure:"weight_decay"`
	Beta1         float64  `mapstructure:"adam_beta1"`
	Beta2         float64  `mapstructure:"adam_beta2"`
	Eps           float64  `mapstructure:"adam_epsilon"`
	MaxGradNorm   float64  `mapstructure:"max_grad_norm"`
	Scheduler     string   `mapstructure:"lr_scheduler"`
	WarmupSteps   int      `mapstructure:"warmup_steps"`
	MaxSteps      int      `mapstructure:"max_steps"`
	Epochs        int      `mapstructure:"epochs"` // used when max_steps is 0
	BatchSize     int      `mapstructure:"batch_size"`
	GradAccum     int      `mapstructure:"grad_accum"`
	EvalEvery     int      `mapstructure:"eval_every"`
	EvalBatches   int      `mapstructure:"eval_batches"`
	SaveEvery     int      `mapstructure:"save_every"`
	KeepLast      int      `mapstructure:"keep_last"`
	LogEvery      int      `mapstructure:"log_every"`
	OutputDir     string   `mapstructure:"output_dir"`
	Seed          uint64   `mapstructure:"seed"`
	ProgressBar   bool     `mapstructure:"progress_bar"`
	// GenerateEvery scores generated answers (GenerateEval: a DocVQA/TextVQA preset on a
	// subset, e.g. limit 50) every that many optimizer steps; 0 = never.
	GenerateEvery int         `mapstructure:"generate_eval_every"`
	GenerateEval  eval.Config `mapstructure:"generate_eval"`
}

// Defaults are HF Trainer's where it has one, and the Idefics2 tutorial's LoRA otherwise.
func Defaults() Config {
	return Config{
		Model: ModelConfig{DType: "bfloat16", PerceiverEps: 1e-5, Quantization: "none", DoubleQuant: true},
		Data: DataConfig{Seed: 42, ShuffleWindow: 4, MaxLength: 2048, Overflow: "skip", Labels: "answers",
			SeqBuckets: []int{256, 512, 1024, 2048}, ImageBuckets: []int{378, 490, 616, 742, 868, 980},
			LongestEdge: 980, ShortestEdge: 378, Workers: 2},
		LoRA: LoRAConfig{R: 8, Alpha: 8, Dropout: 0.1, Init: "gaussian",
			TargetModules: `.*(text_model|modality_projection|perceiver_resampler).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$`},
		Train: TrainConfig{LR: 1e-4, WeightDecay: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1,
			Scheduler: "linear", WarmupSteps: 50, Epochs: 2, BatchSize: 2, GradAccum: 8, EvalBatches: 8,
			SaveEvery: 250, KeepLast: 2, LogEvery: 1, OutputDir: "runs/sft", Seed: 42, ProgressBar: true},
	}
}

// LoadConfig reads a YAML config over the defaults, applies `key=value` overrides and
// IDEFICS2_* environment variables (IDEFICS2_TRAIN_LR=…), and rejects unknown keys.
func LoadConfig(path string, overrides []string) (Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix("IDEFICS2")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	known := knownKeys(reflect.TypeOf(Config{}), "")
	for _, k := range known {
		v.SetDefault(k, nil) // so AutomaticEnv sees every key
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return Config{}, err
		}
		defer f.Close()
		if err := v.ReadConfig(f); err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	for _, o := range overrides {
		k, val, ok := strings.Cut(o, "=")
		if !ok {
			return Config{}, fmt.Errorf("--set %q: want key=value", o)
		}
		v.Set(strings.TrimSpace(k), parseValue(val))
	}
	knownSet := map[string]bool{}
	for _, k := range known {
		knownSet[k] = true
	}
	for _, k := range v.AllKeys() {
		if !knownSet[k] && !isListItemKey(k, knownSet) {
			return Config{}, fmt.Errorf("%s: unknown key %q; did you mean %q?", nameOr(path, "config"), k, nearest(k, known))
		}
	}
	cfg := Defaults()
	settings := v.AllSettings()
	dropNil(settings)
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: &cfg, WeaklyTypedInput: true, ErrorUnused: true,
		DecodeHook: mapstructure.StringToSliceHookFunc(","),
	})
	if err != nil {
		return cfg, err
	}
	if err := dec.Decode(settings); err != nil {
		return cfg, fmt.Errorf("%s: %w", nameOr(path, "config"), err)
	}
	return cfg, cfg.Validate()
}

// Validate checks values that would fail later with a less clear message.
func (c Config) Validate() error {
	switch {
	case c.Model.Path == "":
		return fmt.Errorf("model.path is empty: point it at an HF Idefics2 directory (config.json + safetensors)")
	case c.Model.DType != "float32" && c.Model.DType != "bfloat16":
		return fmt.Errorf("model.dtype %q: use float32 or bfloat16", c.Model.DType)
	case c.Model.Quantization != "none" && c.Model.Quantization != "nf4" && c.Model.Quantization != "fp4" && c.Model.Quantization != "":
		return fmt.Errorf("model.quantization %q: use nf4, fp4 or none", c.Model.Quantization)
	case len(c.Data.Train) == 0:
		return fmt.Errorf("data.train is empty: list at least one dataset")
	case c.Train.BatchSize <= 0 || c.Train.GradAccum <= 0:
		return fmt.Errorf("train.batch_size and train.grad_accum must be positive")
	case c.Train.MaxSteps <= 0 && c.Train.Epochs <= 0:
		return fmt.Errorf("set train.max_steps or train.epochs")
	}
	return nil
}

func nameOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// knownKeys lists the dotted keys of a config struct.
func knownKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, knownKeys(f.Type, key+".")...)
			continue
		}
		keys = append(keys, key)
		if f.Type.Kind() == reflect.Map {
			keys = append(keys, key+"[]") // any key inside a map
		}
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			keys = append(keys, knownKeys(f.Type.Elem(), key+"[].")...)
		}
	}
	sort.Strings(keys)
	return keys
}

// isListItemKey accepts keys viper reports inside list items (they are checked by the decoder).
func isListItemKey(k string, known map[string]bool) bool {
	for kk := range known {
		if base, _, ok := strings.Cut(kk, "[]"); ok && strings.HasPrefix(k, base+".") {
			return true
		}
	}
	return false
}

func dropNil(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			dropNil(x)
			if len(x) == 0 {
				delete(m, k)
			}
		}
	}
}

// parseValue reads an override's value as YAML would (numbers, booleans, lists in brackets).
func parseValue(s string) any {
	var out any
	if err := yamlUnmarshal([]byte(s), &out); err != nil || out == nil {
		return s
	}
	return out
}

// hfNames maps the names HF TrainingArguments and PEFT use to ours, for suggestions.
var hfNames = map[string]string{
	"learning_rate": "lr", "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
	"num_train_epochs": "epochs", "save_steps": "save_every", "eval_steps": "eval_every", "logging_steps": "log_every",
	"save_total_limit": "keep_last", "lora_alpha": "alpha", "lora_dropout": "dropout", "lr_scheduler_type": "lr_scheduler",
	"init_lora_weights": "init", "model_name_or_path": "path", "torch_dtype": "dtype", "max_seq_length": "max_length",
}

// nearest is the known key with the smallest edit distance to k, after translating HF's names.
func nearest(k string, known []string) string {
	i := strings.LastIndexByte(k, '.')
	if ours, ok := hfNames[k[i+1:]]; ok {
		for _, c := range known {
			if strings.HasSuffix(c, "."+ours) && (i < 0 || strings.HasPrefix(c, k[:i+1])) {
				return c
			}
		}
		for _, c := range known {
			if strings.HasSuffix(c, "."+ours) {
				return c
			}
		}
	}
	best, bestD := "", 1<<30
	for _, c := range known {
		if strings.Contains(c, "[]") {
			continue
		}
		if d := levenshtein(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
