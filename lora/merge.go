package lora

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/model"
	"github.com/nlpodyssey/safetensors"
)

// DefaultMaxShardSize is transformers' default max_shard_size ("5GB").
const DefaultMaxShardSize = 5_000_000_000

// MergeOptions control Merge.
type MergeOptions struct {
	DType        dtypes.DType // of the written tensors: Float32 or BFloat16 (zero value: Float32)
	MaxShardSize int64        // bytes of tensor data per shard (zero value: DefaultMaxShardSize)
	// Log, when set, is told about each shard written.
	Log func(format string, args ...any)
	// Dequantize merges a QLoRA adapter: every Linear the 4-bit base quantizes is first replaced
	// by its bitsandbytes quantization round trip (what training saw), then merged (see
	// dequantizedBase). QuantizedFrom is the dtype the base was quantized in (training's compute
	// dtype; zero value: Float32).
	Dequantize    model.Quantization
	QuantizedFrom dtypes.DType
}

// MergeResult describes a merged checkpoint.
type MergeResult struct {
	Dir       string
	Files     []string // safetensors files written (one model.safetensors, or the shards)
	TotalSize int64    // bytes of tensor data
	Params    int64
	Merged    int // Linear weights that took the adapter
	Replaced  int // tensors taken from the adapter's modules_to_save
}

// Files copied unchanged from the base directory when present, so that the merged directory
// is a complete model: tokenizer, processor and chat template.
var companionFiles = []string{"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
	"added_tokens.json", "preprocessor_config.json", "processor_config.json", "chat_template.json", "chat_template.jinja"}

// Merge writes baseDir with the adapter of adapterDir folded in as a full Hugging Face
// checkpoint in outDir: config.json (dtype updated), generation_config.json, the tokenizer and
// processor files of the base, and the weights as model.safetensors or, above
// opt.MaxShardSize, as model-0000i-of-0000n.safetensors shards with
// model.safetensors.index.json. Each targeted Linear weight becomes W + s·B·A (DoRA:
// m / ‖W + s·B·A‖_row ⊙ (W + s·B·A), as PEFT merges), modules_to_save tensors replace the base
// ones, everything else is copied. Tensors are streamed from the memory-mapped base one at a
// time, so memory stays at about one tensor, never the model. outDir must not exist or be empty;
// it appears only once complete.
func Merge(baseDir, adapterDir, outDir string, opt MergeOptions) (*MergeResult, error) {
	if opt.DType == dtypes.InvalidDType {
		opt.DType = dtypes.Float32
	}
	outDT, err := fileDType(opt.DType)
	if err != nil {
		return nil, err
	}
	if opt.MaxShardSize <= 0 {
		opt.MaxShardSize = DefaultMaxShardSize
	}
	if opt.Log == nil {
		opt.Log = func(string, ...any) {}
	}
	outDir = filepath.Clean(outDir)
	cfgPath := filepath.Join(baseDir, "config.json")
	baseCfg, err := model.LoadConfig(cfgPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, e2 := os.Stat(filepath.Join(baseDir, ConfigFile)); e2 == nil {
				return nil, fmt.Errorf("%s holds an adapter, not a base model: pass the base model directory (config.json + safetensors) first and the adapter second", baseDir)
			}
			return nil, fmt.Errorf("%s: no config.json: pass a Hugging Face Idefics2 model directory as the base", baseDir)
		}
		return nil, err
	}
	ad, err := OpenAdapterDir(adapterDir, baseCfg)
	if err != nil {
		return nil, err
	}
	defer ad.Close()
	base, err := model.OpenCheckpoint(baseDir)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	if err := checkBase(base, baseCfg); err != nil {
		return nil, err
	}
	if err := checkFinite(ad, base); err != nil {
		return nil, err
	}
	if err := prepareOut(outDir, baseDir, adapterDir); err != nil {
		return nil, err
	}
	work := outDir + ".partial"
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	res, err := mergeInto(work, base, baseCfg, ad, outDT, opt)
	if err == nil {
		err = writeCompanions(work, baseDir, baseCfg, opt.DType)
	}
	if err != nil {
		os.RemoveAll(work)
		return nil, err
	}
	_ = os.Remove(outDir) // empty, if it exists (prepareOut checked)
	if err := os.Rename(work, outDir); err != nil {
		return nil, err
	}
	res.Dir = outDir
	return res, nil
}

func mergeInto(dir string, base *model.Checkpoint, baseCfg model.Config, ad *AdapterDir, outDT safetensors.DType, opt MergeOptions) (*MergeResult, error) {
	layout := ad.Layout
	params := baseCfg.Params()
	entries := make([]shardEntry, len(params))
	res := &MergeResult{}
	for i, p := range params {
		entries[i] = shardEntry{Name: p.Name, DType: outDT, Shape: p.Shape}
		res.TotalSize += entries[i].bytes()
		res.Params += int64(p.Size())
	}
	shards := planShards(entries, opt.MaxShardSize)
	quantized := opt.Dequantize.Quantizes(baseCfg)
	names := make([]string, len(shards))
	for i := range shards {
		if len(shards) == 1 {
			names[i] = "model.safetensors"
		} else {
			names[i] = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		}
	}
	// Every view read here lies in a memory-mapped file (base or adapter); its pages are dropped
	// from the resident set as soon as they have been used.
	var used [][]byte
	adapterTensor := func(k string) (safetensors.TensorView, bool) {
		v, ok := ad.Tensor(k)
		if ok {
			used = append(used, v.Data())
		}
		return v, ok
	}
	produce := func(e shardEntry) ([]byte, bool, error) {
		if _, saved := layout.Saved[e.Name]; saved {
			if v, ok := adapterTensor(e.Name); ok {
				res.Replaced++
				data, err := convertView(v, outDT)
				return data, v.DType() == outDT, err
			}
		}
		bv, file, _ := base.Tensor(e.Name)
		if ad.baseCopies[e.Name] { // PEFT saved this wrapped module's base weight: it replaces the base's
			bv, _ = adapterTensor(e.Name)
			file = filepath.Join(ad.Dir, WeightsFile)
		}
		used = append(used, bv.Data())
		module := strings.TrimSuffix(e.Name, ".weight")
		if quantized[e.Name] {
			return mergeQuantized(bv, e, layout, adapterTensor, opt, outDT, res)
		}
		if _, adapted := layout.LoRA[module+".lora_A.weight"]; adapted && strings.HasSuffix(e.Name, ".weight") {
			w, err := mappedFloats(bv)
			if err != nil {
				return nil, false, fmt.Errorf("%s in %s: %w", e.Name, file, err)
			}
			if err := mergeModule(w, e.Shape, adapterTensor, module, layout.Config); err != nil {
				return nil, false, err
			}
			res.Merged++
			data, err := encodeFloats(w, outDT)
			return data, false, err
		}
		data, err := convertView(bv, outDT)
		return data, bv.DType() == outDT, err
	}
	after := func(e shardEntry) {
		for _, d := range used {
			release(d)
		}
		used = used[:0]
		if e.bytes() >= 16<<20 {
			// Hand a large tensor's buffers back to the OS now rather than at the next GC cycle,
			// which would otherwise let the heap grow to twice the largest tensor.
			debug.FreeOSMemory()
		}
	}
	weightMap := map[string]string{}
	for i, shard := range shards {
		if err := writeShard(filepath.Join(dir, names[i]), shard, map[string]string{"format": "pt"}, produce, after); err != nil {
			return nil, fmt.Errorf("writing %s: %w", names[i], err)
		}
		size := int64(0)
		for _, e := range shard {
			weightMap[e.Name] = names[i]
			size += e.bytes()
		}
		opt.Log("wrote %s (%d tensors, %.1f MB)", names[i], len(shard), float64(size)/1e6)
	}
	res.Files = names
	if len(shards) > 1 {
		index := map[string]any{
			"metadata":   map[string]int64{"total_size": res.TotalSize, "total_parameters": res.Params},
			"weight_map": weightMap,
		}
		js, err := json.MarshalIndent(index, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), append(js, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// convertView returns the tensor's bytes in dtype: the mapped bytes themselves when the dtype
// already matches, else a converted copy, converted chunk by chunk with each chunk's pages of
// the (memory-mapped) source dropped once converted.
func convertView(v safetensors.TensorView, dt safetensors.DType) ([]byte, error) {
	if v.DType() == dt {
		return v.Data(), nil
	}
	at, err := floatReader(v)
	if err != nil {
		return nil, err
	}
	size := int(v.DType().Size())
	n := len(v.Data()) / size
	out := make([]byte, n*int(dt.Size()))
	const chunk = 8 << 20 // elements
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		switch dt {
		case safetensors.F32:
			for i := lo; i < hi; i++ {
				binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(at(i)))
			}
		case safetensors.BF16:
			for i := lo; i < hi; i++ {
				binary.LittleEndian.PutUint16(out[2*i:], model.BF16RoundNearestEven(at(i)).Bits())
			}
		default:
			return nil, fmt.Errorf("dtype %s cannot be written (F32 or BF16)", dt)
		}
		release(v.Data()[lo*size : hi*size])
	}
	return out, nil
}

// mergeModule folds the adapter of module into its weight w [out, in] (float32, in place).
// tensor returns a LoRA tensor by canonical key.
func mergeModule(w []float32, shape []int, tensor func(string) (safetensors.TensorView, bool), module string, cfg Config) error {
	get := func(key string) ([]float32, error) {
		v, ok := tensor(key)
		if !ok {
			return nil, fmt.Errorf("adapter has no %s", key)
		}
		return viewFloats(v)
	}
	a, err := get(module + ".lora_A.weight")
	if err != nil {
		return err
	}
	b, err := get(module + ".lora_B.weight")
	if err != nil {
		return err
	}
	var mag []float32
	if cfg.UseDoRA {
		if mag, err = get(module + "." + magnitude); err != nil {
			return err
		}
	}
	MergeWeight(w, shape[0], shape[1], a, b, cfg.Rank(module), cfg.Scaling(module), mag)
	return nil
}

// MergeWeight folds a LoRA update into the Linear weight w [out, in] in place:
// w += s·B·A with A [r, in], B [out, r]; with DoRA magnitudes mag [out] (nil for LoRA) each
// row is then rescaled to mag[o] / ‖w[o, :]‖, PEFT's merged DoRA weight. Rows are computed in
// parallel; each B·A entry is accumulated in float64 and the sum rounded to float32 once.
func MergeWeight(w []float32, out, in int, a, b []float32, r int, s float64, mag []float32) {
	workers := runtime.GOMAXPROCS(0)
	if workers > out {
		workers = out
	}
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			for o := k; o < out; o += workers {
				row := w[o*in : (o+1)*in]
				bo := b[o*r : (o+1)*r]
				for i := range row {
					d := 0.0
					for j, bj := range bo {
						d += float64(bj) * float64(a[j*in+i])
					}
					row[i] = float32(float64(row[i]) + float64(float32(s*d)))
				}
				if mag != nil {
					n := 0.0
					for _, x := range row {
						n += float64(x) * float64(x)
					}
					f := float64(mag[o]) / math.Sqrt(n)
					for i, x := range row {
						row[i] = float32(f * float64(x))
					}
				}
			}
		}(k)
	}
	wg.Wait()
}

// checkBase verifies that the base checkpoint holds exactly the tensors its config.json says.
func checkBase(ck *model.Checkpoint, c model.Config) error {
	want := map[string]bool{}
	var problems []string
	for _, p := range c.Params() {
		want[p.Name] = true
		v, file, ok := ck.Tensor(p.Name)
		switch {
		case !ok:
			problems = append(problems, "missing tensor "+p.Name)
		case !slices.Equal(dims(v), p.Shape):
			problems = append(problems, fmt.Sprintf("%s in %s has shape %v, config.json needs %v", p.Name, file, dims(v), p.Shape))
		}
	}
	for _, n := range ck.Names() {
		if !want[n] {
			problems = append(problems, "unexpected tensor "+n)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("base checkpoint %s does not match its config.json: %s: download the base model again", ck.Dir, listSome(problems))
	}
	return nil
}

func prepareOut(out, baseDir, adapterDir string) error {
	for _, d := range []string{baseDir, adapterDir} {
		if same, _ := sameDir(out, d); same {
			return fmt.Errorf("%s: the merged model cannot be written over its inputs: choose a new output directory", out)
		}
	}
	ents, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(filepath.Dir(filepath.Clean(out)), 0o755)
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s exists and is not empty: choose a new output directory (or remove it)", out)
	}
	return nil
}

// writeCompanions writes config.json (its dtype fields set to what was written),
// generation_config.json (the base's, or one derived from config.json as transformers does) and
// copies the tokenizer and processor files.
func writeCompanions(dir, baseDir string, c model.Config, dt dtypes.DType) error {
	data, err := os.ReadFile(filepath.Join(baseDir, "config.json"))
	if err != nil {
		return err
	}
	name := "float32"
	if dt == dtypes.BFloat16 {
		name = "bfloat16"
	}
	cfg, err := setConfigDType(data, name)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(baseDir, "config.json"), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	gen, err := os.ReadFile(filepath.Join(baseDir, "generation_config.json"))
	if errors.Is(err, os.ErrNotExist) {
		g := map[string]any{"_from_model_config": true, "bos_token_id": c.Text.BOSTokenID, "eos_token_id": c.Text.EOSTokenID}
		if c.Text.PadTokenID != nil {
			g["pad_token_id"] = *c.Text.PadTokenID
		}
		gen, err = json.MarshalIndent(g, "", "  ")
		gen = append(gen, '\n')
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), gen, 0o644); err != nil {
		return err
	}
	for _, f := range companionFiles {
		if err := copyFile(filepath.Join(baseDir, f), filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// setConfigDType sets every "dtype"/"torch_dtype" entry of an HF config (top level and
// sub-configs) to name, adding "torch_dtype" at the top level when there is none; numbers and
// all other values are kept as written.
func setConfigDType(data []byte, name string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	var set func(m map[string]any)
	set = func(m map[string]any) {
		for k, v := range m {
			if (k == "dtype" || k == "torch_dtype") && v != nil {
				m[k] = name
			}
			if sub, ok := v.(map[string]any); ok && strings.HasSuffix(k, "_config") {
				set(sub)
			}
		}
	}
	set(m)
	if _, ok := m["dtype"]; !ok {
		if _, ok := m["torch_dtype"]; !ok {
			m["torch_dtype"] = name
		}
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
