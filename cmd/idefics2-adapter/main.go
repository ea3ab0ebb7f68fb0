// Command idefics2-adapter moves adapters between idefics2-train, PEFT and plain Hugging Face
// checkpoints.
//
//	idefics2-adapter export --checkpoint runs/sft [--config configs/sft.yaml] [--set k=v] --out adapter/
//	idefics2-adapter import --base idefics2-8b --adapter some-peft-adapter [--out canonical/]
//	idefics2-adapter merge  --base idefics2-8b --adapter adapter/ --out merged/ [--dtype bfloat16] [--max-shard-size 5GB] [--quantization nf4]
//	idefics2-adapter logits --model DIR [--adapter DIR] --inputs inputs.safetensors --out logits.safetensors
//
// export turns a training checkpoint (trainer_state.safetensors of idefics2-train) into a PEFT
// adapter directory that PeftModel.from_pretrained loads; import checks a PEFT adapter against a
// base model, says what it targets and, with --out, rewrites its keys in PEFT's own format;
// merge folds an adapter into the base weights and writes a full Hugging Face checkpoint
// (sharded safetensors + index, config.json, generation_config.json) that
// Idefics2ForConditionalGeneration.from_pretrained loads; logits runs one forward pass on a
// batch stored as safetensors (input_ids, attention_mask, pixel_values, pixel_attention_mask)
// and writes the logits, for side-by-side checks against Python.
package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/config"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/session"
	"github.com/idefics2/idefics2/train"
	"github.com/nlpodyssey/safetensors"
)

const usage = `usage: idefics2-adapter <command> [flags]

commands:
  export  training checkpoint (idefics2-train) → PEFT adapter directory
  import  check a PEFT adapter against a base model, print what it targets, optionally rewrite its keys in PEFT's format
  merge   base model + adapter → full Hugging Face checkpoint (sharded safetensors, index, config.json, generation_config.json)
  logits  forward pass on a stored batch → logits.safetensors (for comparisons with Python)

every command also takes --config FILE and --set key=value (its flags are shorthands for config keys);
run "idefics2-adapter <command> -h" for the flags of a command`

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "export":
		err = runExport(args)
	case "import":
		err = runImport(args)
	case "merge":
		err = runMerge(args)
	case "logits":
		err = runLogits(args)
	default:
		fmt.Fprintf(os.Stderr, "idefics2-adapter: unknown command %q\n%s\n", cmd, usage)
		os.Exit(2)
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "idefics2-adapter %s: %v\n", cmd, err)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "idefics2-adapter %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// newFlags starts a command's flags: shorthands for the keys of cfg, next to --config and --set.
func newFlags(name, synopsis string, cfg any) *config.Flags {
	return config.NewFlags("idefics2-adapter "+name, "usage: idefics2-adapter "+name+" "+synopsis, cfg)
}

// parse reads the command line into cfg; any problem with it is a usage error.
func parse(fs *config.Flags, args []string, cfg any) error {
	if err := fs.Parse(args, cfg); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// parseDType reads a --dtype of written tensors; "keep" (the file's own) where allowed.
func parseDType(s string, allowKeep bool) (dtypes.DType, error) {
	if allowKeep && (s == "" || s == "keep") {
		return dtypes.InvalidDType, nil
	}
	dt, err := model.ParseDType(s)
	if err != nil {
		return 0, usageError{err.Error()}
	}
	return dt, nil
}

// parseSize reads a shard size as transformers does: "5GB" = 5·10⁹ bytes, "2GiB" = 2·2³⁰,
// also KB/MB/KiB/MiB and plain byte counts.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   float64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, usageError{fmt.Sprintf("--max-shard-size %q: use a size such as 5GB, 500MB or 2GiB", s)}
	}
	return int64(v * mult), nil
}

// ---- export -------------------------------------------------------------------------------

// exportConfig is the training config of the run (the LoRA settings, modules_to_save and base
// model come from it, mapped exactly as the trainer maps them) and what to export.
type exportConfig struct {
	train.Config `mapstructure:",squash"`
	Export       exportOptions `mapstructure:"export"`
}

type exportOptions struct {
	Checkpoint    string `mapstructure:"checkpoint"`     // checkpoint-<step> directory, or the run's output directory
	AdapterConfig string `mapstructure:"adapter_config"` // adapter_config.json with the run's LoRA settings, instead of --config
	Base          string `mapstructure:"base"`           // base model directory; "" = model.path
	Out           string `mapstructure:"out"`
	DType         string `mapstructure:"dtype" check:"oneof=float32|bfloat16"`
}

// Validate leaves the training-only rules (data, steps) to the trainer.
func (exportConfig) Validate() error { return nil }

func runExport(args []string) error {
	ec := exportConfig{Config: train.Defaults(), Export: exportOptions{DType: "float32"}}
	fs := newFlags("export", "--checkpoint DIR (--config train.yaml [--set k=v] | --adapter-config FILE --base DIR) --out DIR", &ec)
	fs.Bind("checkpoint", "export.checkpoint", "a checkpoint-<step> directory of idefics2-train, or its output directory (the newest checkpoint is taken)")
	fs.Bind("adapter-config", "export.adapter_config", "an adapter_config.json with the run's LoRA settings, instead of --config (the YAML config the run was trained with)")
	fs.Bind("base", "export.base", "base model directory (default: model.path of --config)")
	fs.Bind("out", "export.out", "output adapter directory (required)")
	fs.Bind("dtype", "export.dtype", "dtype of the written tensors: float32 or bfloat16")
	if err := parse(fs, args, &ec); err != nil {
		return err
	}
	trainCfg := fs.ConfigPath()
	eo := ec.Export
	ckDir, adapterCfg, base, out := &eo.Checkpoint, &eo.AdapterConfig, &eo.Base, &eo.Out
	if *ckDir != "" && trainCfg == "" && *adapterCfg == "" {
		// idefics2-train writes the adapter's config into every checkpoint.
		if path, err := checkpointFile(*ckDir); err == nil {
			if own := filepath.Join(filepath.Dir(path), "adapter_config.json"); fileExists(own) {
				*adapterCfg = own
				if *base == "" {
					if c, err := lora.ReadConfig(own); err == nil {
						*base = c.BaseModel
					}
				}
			}
		}
	}
	if *ckDir == "" || *out == "" || (trainCfg == "") == (*adapterCfg == "") {
		fs.Usage()
		return usageError{"--checkpoint, --out and one of --config / --adapter-config are required (checkpoints written by idefics2-train carry their adapter_config.json)"}
	}
	dtype, err := parseDType(eo.DType, false)
	if err != nil {
		return err
	}
	var cfg lora.Config
	if trainCfg != "" {
		if ec.LoRA.R <= 0 {
			return fmt.Errorf("%s: lora.r is %d: the run trained no LoRA adapter, so there is no PEFT adapter to export", trainCfg, ec.LoRA.R)
		}
		cfg = ec.AdapterConfig()
		if *base == "" {
			*base = ec.Model.Path
		}
	} else {
		if cfg, err = lora.ReadConfig(*adapterCfg); err != nil {
			return err
		}
		if *base == "" {
			return usageError{"--adapter-config needs --base (the model directory the run trained on)"}
		}
	}
	bc, err := model.LoadConfig(filepath.Join(*base, "config.json"))
	if err != nil {
		return fmt.Errorf("base model: %w (pass --base, the model directory the run trained on)", err)
	}
	layout, err := lora.NewLayout(bc, cfg)
	if err != nil {
		return err
	}
	path, err := checkpointFile(*ckDir)
	if err != nil {
		return err
	}
	ck, err := model.OpenSafetensors(path)
	if err != nil {
		return err
	}
	defer ck.Close()
	const prefix = "param/"
	var names []string
	for _, n := range ck.Names() {
		if strings.HasPrefix(n, prefix) {
			names = append(names, strings.TrimPrefix(n, prefix))
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("%s holds no param/ tensors: it is not a checkpoint of idefics2-train", path)
	}
	get := func(n string) (safetensors.TensorView, bool) {
		v, _, ok := ck.Tensor(prefix + n)
		return v, ok
	}
	if err := lora.WriteAdapterDir(*out, layout, names, get, dtype); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Printf("exported %s → %s: %d adapted modules, %d modules_to_save tensors, %s\n",
		path, *out, len(layout.Modules), len(layout.Saved), dtype)
	return nil
}

// checkpointFile finds trainer_state.safetensors in a checkpoint directory, or in the newest
// checkpoint of a run's output directory.
func checkpointFile(dir string) (string, error) {
	const name = "trainer_state.safetensors"
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		return filepath.Join(dir, name), nil
	}
	if latest := train.LatestCheckpoint(dir); latest != "" {
		return filepath.Join(latest, name), nil
	}
	return "", fmt.Errorf("%s has no %s and no checkpoint-<step> directory: pass a checkpoint of idefics2-train or its train.output_dir", dir, name)
}

// ---- import -------------------------------------------------------------------------------

type importConfig struct {
	Import struct {
		Base    string `mapstructure:"base"`
		Adapter string `mapstructure:"adapter"`
		Out     string `mapstructure:"out"`
		DType   string `mapstructure:"dtype" check:"oneof=keep|float32|bfloat16"`
	} `mapstructure:"import"`
}

func runImport(args []string) error {
	var ic importConfig
	ic.Import.DType = "keep"
	fs := newFlags("import", "--base DIR --adapter DIR [--out DIR] [--dtype keep|float32|bfloat16]", &ic)
	fs.Bind("base", "import.base", "base model directory (config.json) the adapter is for (required)")
	fs.Bind("adapter", "import.adapter", "PEFT adapter directory (required)")
	fs.Bind("out", "import.out", "write the adapter here with PEFT's exact key format (base_model.model. prefix, no adapter-name infix)")
	fs.Bind("dtype", "import.dtype", "dtype of the tensors written with --out: keep, float32 or bfloat16")
	if err := parse(fs, args, &ic); err != nil {
		return err
	}
	o := ic.Import
	base, adapter, out := &o.Base, &o.Adapter, &o.Out
	if *base == "" || *adapter == "" {
		fs.Usage()
		return usageError{"--base and --adapter are required"}
	}
	dtype, err := parseDType(o.DType, true)
	if err != nil {
		return err
	}
	bc, err := model.LoadConfig(filepath.Join(*base, "config.json"))
	if err != nil {
		return fmt.Errorf("base model: %w", err)
	}
	ad, err := lora.OpenAdapterDir(*adapter, bc)
	if err != nil {
		return err
	}
	defer ad.Close()
	fmt.Print(describe(ad))
	if *out != "" {
		if err := ad.WriteCanonical(*out, dtype); err != nil {
			return err
		}
		fmt.Printf("wrote %s in PEFT's format\n", *out)
	}
	return nil
}

// describe summarises an adapter: kind, settings, what it adapts and saves, key format, size.
func describe(ad *lora.AdapterDir) string {
	l := ad.Layout
	c := l.Config
	var b strings.Builder
	kind := "LoRA"
	if c.UseDoRA {
		kind = "DoRA"
	}
	scaling := "alpha/r"
	if c.UseRSLoRA {
		scaling = "alpha/√r (rsLoRA)"
	}
	fmt.Fprintf(&b, "adapter        %s\n", ad.Dir)
	fmt.Fprintf(&b, "type           %s, r %d, alpha %g, scaling %s = %.4g, dropout %g\n", kind, c.R, c.LoraAlpha, scaling, scalingOf(c), c.LoraDropout)
	if len(c.RankPattern) > 0 || len(c.AlphaPattern) > 0 {
		fmt.Fprintf(&b, "patterns       rank %v, alpha %v\n", c.RankPattern, c.AlphaPattern)
	}
	per := map[string]int{}
	kinds := map[string]bool{}
	for _, m := range l.Modules {
		per[model.Param{Name: m + ".weight"}.Component()]++
		kinds[m[strings.LastIndexByte(m, '.')+1:]] = true
	}
	comps := make([]string, 0, len(per))
	for k, n := range per {
		comps = append(comps, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(comps)
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "adapted        %d Linear modules (%s): %s\n", len(l.Modules), strings.Join(comps, ", "), strings.Join(names, ", "))
	if len(l.SavedModules) > 0 {
		n, params := 0, int64(0)
		for _, k := range ad.Keys() {
			if shape, ok := l.Saved[k]; ok {
				n++
				params += int64(model.Param{Shape: shape}.Size())
			}
		}
		fmt.Fprintf(&b, "saved modules  %s (modules_to_save): %d of %d tensors in the file, %d parameters\n", strings.Join(l.SavedModules, ", "), n, len(l.Saved), params)
	}
	if copies := ad.BaseCopies(); len(copies) > 0 {
		fmt.Fprintf(&b, "base weights   %s (saved by PEFT with the adapter; they replace the base model's)\n", strings.Join(copies, ", "))
	}
	fmt.Fprintf(&b, "keys           %s\n", ad.Variant)
	fmt.Fprintf(&b, "tensors        %d (%s)\n", len(ad.Keys()), strings.Join(ad.DTypes(), ", "))
	fmt.Fprintf(&b, "base_model     %q (as recorded in adapter_config.json)\n", c.BaseModel)
	return b.String()
}

func scalingOf(c lora.Config) float64 {
	if c.UseRSLoRA {
		return c.LoraAlpha / math.Sqrt(float64(c.R))
	}
	return c.LoraAlpha / float64(c.R)
}

// ---- merge --------------------------------------------------------------------------------

type mergeConfig struct {
	Merge struct {
		Base         string `mapstructure:"base"`
		Adapter      string `mapstructure:"adapter"`
		Out          string `mapstructure:"out"`
		DType        string `mapstructure:"dtype" check:"oneof=float32|bfloat16"`
		MaxShardSize string `mapstructure:"max_shard_size"`
		Quiet        bool   `mapstructure:"quiet"`
		// A QLoRA adapter: the base trained in 4 bits, dequantized before merging.
		Quantization  string `mapstructure:"quantization" check:"oneof=none|nf4|fp4"`
		DoubleQuant   bool   `mapstructure:"double_quant"`
		QuantizedFrom string `mapstructure:"quantized_from" check:"oneof=|float32|bfloat16"`
	} `mapstructure:"merge"`
}

func runMerge(args []string) error {
	var mc mergeConfig
	mc.Merge.DType, mc.Merge.MaxShardSize = "bfloat16", "5GB"
	mc.Merge.Quantization, mc.Merge.DoubleQuant = "none", true
	fs := newFlags("merge", "--base DIR --adapter DIR --out DIR [--dtype bfloat16|float32] [--max-shard-size 5GB]", &mc)
	fs.Bind("base", "merge.base", "base model directory (config.json + safetensors) (required)")
	fs.Bind("adapter", "merge.adapter", "PEFT adapter directory (required)")
	fs.Bind("out", "merge.out", "output directory for the merged model; must not exist or be empty (required)")
	fs.Bind("dtype", "merge.dtype", "dtype of the written weights: bfloat16 or float32")
	fs.Bind("max-shard-size", "merge.max_shard_size", "largest shard, as transformers' max_shard_size (5GB = 5·10⁹ bytes, 2GiB = 2·2³⁰)")
	fs.Bind("quiet", "merge.quiet", "do not report each shard")
	fs.Bind("quantization", "merge.quantization", "QLoRA adapter: the base was trained in 4 bits (nf4 or fp4); its Linears are dequantized before merging, as transformers' dequantize() + PEFT's merge_and_unload()")
	fs.Bind("double-quant", "merge.double_quant", "with --quantization: the base's scales were double-quantized (model.double_quant)")
	fs.Bind("quantized-from", "merge.quantized_from", "with --quantization: the dtype the base was quantized in (training's model.dtype; default --dtype)")
	if err := parse(fs, args, &mc); err != nil {
		return err
	}
	o := mc.Merge
	base, adapter, out, shard, quiet := &o.Base, &o.Adapter, &o.Out, &o.MaxShardSize, &o.Quiet
	if *base == "" || *adapter == "" || *out == "" {
		fs.Usage()
		return usageError{"--base, --adapter and --out are required"}
	}
	dtype, err := parseDType(o.DType, false)
	if err != nil {
		return err
	}
	q, err := model.ParseQuantization(o.Quantization, o.DoubleQuant)
	if err != nil {
		return usageError{"--quantization: use nf4, fp4 or none"}
	}
	from := dtype
	if o.QuantizedFrom != "" {
		if from, err = parseDType(o.QuantizedFrom, false); err != nil {
			return err
		}
	}
	size, err := parseSize(*shard)
	if err != nil {
		return err
	}
	opt := lora.MergeOptions{DType: dtype, MaxShardSize: size, Dequantize: q, QuantizedFrom: from}
	if !*quiet {
		opt.Log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	}
	start := time.Now()
	res, err := lora.Merge(*base, *adapter, *out, opt)
	if err != nil {
		return err
	}
	fmt.Printf("merged %s + %s → %s: %d weights merged, %d replaced by modules_to_save, %d files, %.1f MB of %s, %.1fs, peak RSS %.0f MB\n",
		*base, *adapter, res.Dir, res.Merged, res.Replaced, len(res.Files), float64(res.TotalSize)/1e6, dtype,
		time.Since(start).Seconds(), peakRSS())
	return nil
}

// peakRSS is the process's peak resident set size in MB: VmHWM of /proc/self/status (getrusage's
// maxrss would include the peak of a parent that forked this process).
func peakRSS() float64 {
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}

// ---- logits -------------------------------------------------------------------------------

type logitsConfig struct {
	Model  session.Options `mapstructure:"model"`
	Logits struct {
		Inputs string `mapstructure:"inputs"`
		Out    string `mapstructure:"out"`
	} `mapstructure:"logits"`
}

func runLogits(args []string) error {
	lc := logitsConfig{Model: session.Options{DType: "float32"}}
	fs := newFlags("logits", "--model DIR [--adapter DIR] --inputs FILE --out FILE", &lc)
	fs.Bind("model", "model.path", "model directory (required)")
	fs.Bind("adapter", "model.adapter", "PEFT adapter directory to apply")
	fs.Bind("inputs", "logits.inputs", "safetensors with input_ids, attention_mask [, pixel_values, pixel_attention_mask] (required)")
	fs.Bind("out", "logits.out", "where to write the logits (safetensors, key \"logits\", F32 [B,T,V]) (required)")
	fs.Bind("dtype", "model.dtype", "compute dtype: float32 or bfloat16")
	fs.Bind("backend", "model.backend", "GoMLX backend (default: $GOMLX_BACKEND, else XLA if a plugin loads, else pure Go)")
	if err := parse(fs, args, &lc); err != nil {
		return err
	}
	inputs, out := &lc.Logits.Inputs, &lc.Logits.Out
	if *inputs == "" || *out == "" {
		fs.Usage()
		return usageError{"--model, --inputs and --out are required"}
	}
	m, err := session.LoadModel(lc.Model.Path, lc.Model.DType, lc.Model.PerceiverEps)
	if err != nil {
		return err
	}
	if lc.Model.Adapter != "" {
		if _, err := session.LoadAdapter(m, lc.Model.Adapter); err != nil {
			return err
		}
	}
	raw, err := fixtures.ReadTensors(*inputs)
	if err != nil {
		return err
	}
	in, err := fixtures.ModelInputs(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *inputs, err)
	}
	in.Labels = nil
	batch, err := model.NewBatch(m.Config, in)
	if err != nil {
		return err
	}
	backendHandle, err := backend.New(lc.Model.Backend)
	if err != nil {
		return err
	}
	res, err := m.Run(backendHandle, batch)
	if err != nil {
		return err
	}
	view, err := model.TensorToView(res.Logits, dtypes.Float32)
	if err != nil {
		return err
	}
	if err := model.WriteSafetensors(*out, map[string]safetensors.TensorView{"logits": view}, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	fmt.Printf("wrote %s: logits %v\n", *out, res.Logits.Shape().Dimensions)
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
