package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/idefics2/idefics2/internal/fixtures"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestProcessorFixtures runs every kind=processor fixture: the chat template text, token ids,
// attention mask and labels must be identical, and so must pixel_values and
// pixel_attention_mask, bit for bit (tensors too large to commit are compared by SHA-256).

type caseSample struct {
	Messages []Message `json:"messages"`
	Images   []string  `json:"images"`
}

type processorCase struct {
	caseSample
	Batch               []caseSample `json:"batch"`
	Tokenizer           string       `json:"tokenizer"`
	Compat              string       `json:"compat"`
	AddGenerationPrompt bool         `json:"add_generation_prompt"`
	Labels              *string      `json:"labels"`
	PaddingSide         string       `json:"padding_side"`
	Processor           struct {
		DoImageSplitting *bool     `json:"do_image_splitting"`
		Size             ImageSize `json:"size"`
	} `json:"processor"`
}

func TestProcessorFixtures(t *testing.T) {
	fx := findFixtures(t, "processor")
	if len(fx) == 0 {
		t.Fatal("no processor fixtures found under", fixtures.Roots())
	}
	toks := map[string]*Tokenizer{}
	defer func() {
		for _, tk := range toks {
			tk.Close()
		}
	}()
	for _, dir := range sortedKeys(fx) {
		meta := fx[dir]
		t.Run(filepath.Base(dir), func(t *testing.T) {
			runProcessorFixture(t, dir, meta, toks)
		})
	}
}

func runProcessorFixture(t *testing.T, dir string, meta fixtureMeta, toks map[string]*Tokenizer) {
	var c processorCase
	b, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", filepath.Join(dir, "case.json"), err)
	}
	compat, err := ParseCompat(c.Compat)
	if err != nil {
		t.Fatal(err)
	}
	tokDir := dir
	if c.Tokenizer != "" {
		tokDir = filepath.Join(dir, c.Tokenizer)
	}
	key := tokDir + "|" + compat.String()
	tok := toks[key]
	if tok == nil {
		if tok, err = LoadTokenizer(tokDir, compat); err != nil {
			t.Fatal(err)
		}
		toks[key] = tok
	}
	cfg := DefaultImageProcessorConfig()
	if c.Processor.DoImageSplitting != nil {
		cfg.DoImageSplitting = *c.Processor.DoImageSplitting
	}
	if c.Processor.Size.LongestEdge > 0 {
		cfg.Size = c.Processor.Size
	}
	p, err := NewProcessor(tok, cfg)
	if err != nil {
		t.Fatal(err)
	}
	opt := EncodeOptions{AddGenerationPrompt: c.AddGenerationPrompt}
	if c.Labels != nil {
		switch *c.Labels {
		case "answers":
			opt.Labels = LabelAnswers
		case "all":
			opt.Labels = LabelAll
		default:
			t.Fatalf("case.json: unknown labels %q", *c.Labels)
		}
	}
	samples := c.Batch
	if len(samples) == 0 {
		samples = []caseSample{c.caseSample}
	}
	var encoded []*Sample
	var prompts []string
	for i, s := range samples {
		imgs := make([]*Image, len(s.Images))
		for j, name := range s.Images {
			raw, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if imgs[j], err = DecodeImage(raw); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		enc, err := p.EncodeChat(s.Messages, imgs, opt)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		encoded = append(encoded, enc)
		prompts = append(prompts, enc.Prompt)
	}
	wantPrompt, err := os.ReadFile(filepath.Join(dir, "expected_prompt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(prompts, "\n---\n"); got != string(wantPrompt) {
		t.Errorf("chat template text differs:\n got %q\nwant %q", got, wantPrompt)
	}
	side := PadLeft
	if c.PaddingSide == "right" {
		side = PadRight
	}
	bt, err := p.Collate(encoded, CollateOptions{PadSide: side})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]struct {
		shape []int
		raw   []byte
	}{
		"input_ids":      {[]int{bt.B, bt.T}, rawI64(bt.InputIDs)},
		"attention_mask": {[]int{bt.B, bt.T}, rawI64(bt.AttentionMask)},
	}
	if bt.Labels != nil {
		got["labels"] = struct {
			shape []int
			raw   []byte
		}{[]int{bt.B, bt.T}, rawI64(bt.Labels)}
	}
	if bt.N > 0 {
		got["pixel_values"] = struct {
			shape []int
			raw   []byte
		}{[]int{bt.B, bt.N, 3, bt.H, bt.W}, rawF32(bt.PixelValues)}
		got["pixel_attention_mask"] = struct {
			shape []int
			raw   []byte
		}{[]int{bt.B, bt.N, bt.H, bt.W}, rawI64(bt.PixelAttentionMask)}
	}
	want := readSafetensors(t, filepath.Join(dir, "expected.safetensors"))
	names := map[string]bool{}
	for k := range want {
		names[k] = true
	}
	for k := range meta.SHA256 {
		names[k] = true
	}
	for _, name := range sortedKeys(names) {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: expected by the fixture, not produced", name)
			continue
		}
		if w, ok := want[name]; ok {
			if !slices.Equal(g.shape, w.Shape) {
				t.Errorf("%s: shape %v, want %v", name, g.shape, w.Shape)
				continue
			}
			if !bytes.Equal(g.raw, w.Raw) {
				t.Errorf("%s: %s", name, describeDiff(name, g.raw, w))
			}
			continue
		}
		if s := meta.Shapes[name]; s != nil && !slices.Equal(g.shape, s) {
			t.Errorf("%s: shape %v, want %v", name, g.shape, s)
			continue
		}
		if h := sha256Hex(g.raw); h != meta.SHA256[name] {
			t.Errorf("%s: sha256 %s, want %s (this fixture stores only the digest; regenerate it with "+
				"scripts/make_processor_fixtures.py --full --out DIR and run with IDEFICS2_FIXTURES=DIR to see the values)", name, h, meta.SHA256[name])
		}
	}
	for name := range got {
		if !names[name] {
			t.Errorf("%s: produced but not in the fixture", name)
		}
	}
}

// describeDiff says where two tensors first differ and by how much at most.
func describeDiff(name string, got []byte, want tensor) string {
	if want.DType == "F32" {
		g, w := tensor{Raw: got}.floats(), want.floats()
		first, maxd, n := -1, 0.0, 0
		for i := range w {
			if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
				n++
				if first < 0 {
					first = i
				}
				maxd = math.Max(maxd, math.Abs(float64(g[i])-float64(w[i])))
			}
		}
		return fmt.Sprintf("%d of %d values differ, first at flat index %d (got %v want %v), max |diff| %g", n, len(w), first, g[first], w[first], maxd)
	}
	g, w := tensor{DType: "I64", Raw: got}.ints(), want.ints()
	for i := range w {
		if g[i] != w[i] {
			lo, hi := max(0, i-3), min(len(w), i+5)
			return fmt.Sprintf("first difference at flat index %d: got %v want %v", i, g[lo:hi], w[lo:hi])
		}
	}
	return "differs"
}
