package data

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Decoding and resizing against Pillow, the library HF's PIL image processor runs
// (testdata/pillow, written by scripts/make_processor_fixtures.py).

type decodeEntry struct {
	File       string `json:"file"`
	PillowMode string `json:"pillow_mode"`
	Processor  string `json:"processor_sha256"`
	ImageProc  string `json:"image_processor_sha256"`
	Exact      *bool  `json:"exact"`
}

func TestDecodeMatchesPillow(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "testdata", "pillow", "decode")
	var idx struct {
		Files []decodeEntry `json:"files"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "decode.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("decode.json: %v", err)
	}
	want := readSafetensors(t, filepath.Join(dir, "expected.safetensors"))
	goJPEGMax := 0
	for _, e := range idx.Files {
		raw, err := os.ReadFile(filepath.Join(dir, e.File))
		if err != nil {
			t.Fatal(err)
		}
		// For the record: how far Go's own JPEG decoder is from Pillow (why libjpeg is used).
		if w, ok := want[e.File+":processor"]; ok && SniffFormat(raw) == FormatJPEG && EXIFOrientation(raw, FormatJPEG) == 1 {
			if m, err := jpeg.Decode(bytes.NewReader(raw)); err == nil {
				goJPEGMax = max(goJPEGMax, maxAbsDiff(FromGoImage(m, AlphaDrop).Pix, w.Raw))
			}
		}
		for _, path := range []struct {
			name string
			opt  DecodeOptions
			sha  string
		}{{"processor", ProcessorDecode, e.Processor}, {"image_processor", ImageProcessorDecode, e.ImageProc}} {
			img, err := DecodeImageWith(raw, path.opt)
			if err != nil {
				t.Errorf("%s: %v", e.File, err)
				continue
			}
			exact := e.Exact == nil || *e.Exact
			if w, ok := want[e.File+":"+path.name]; ok {
				if !slices.Equal([]int{img.H, img.W, 3}, w.Shape) {
					t.Errorf("%s (%s, %s path): got %dx%d, want shape %v", e.File, e.PillowMode, path.name, img.W, img.H, w.Shape)
					continue
				}
				if d := maxAbsDiff(img.Pix, w.Raw); d != 0 {
					if exact {
						t.Errorf("%s (%s, %s path): max |diff| %d vs Pillow", e.File, e.PillowMode, path.name, d)
					} else {
						t.Logf("%s (%s, %s path): max |diff| %d vs Pillow (not reproduced exactly: see DecodeImageWith)", e.File, e.PillowMode, path.name, d)
					}
				}
				continue
			}
			if h := sha256Hex(img.Pix); h != path.sha && exact {
				t.Errorf("%s (%s, %s path): sha256 differs from Pillow's", e.File, e.PillowMode, path.name)
			}
		}
	}
	t.Logf("%d files identical to Pillow; Go's image/jpeg would be off by up to %d levels on the same JPEGs", len(idx.Files), goJPEGMax)
}

func maxAbsDiff(a, b []byte) int {
	m := 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		m = max(m, d)
	}
	return m
}

func TestResizeMatchesPillow(t *testing.T) {
	root := filepath.Join(repoRoot(t), "testdata", "pillow")
	var idx struct {
		Cases []struct {
			Src     string `json:"src"`
			SrcFile string `json:"src_file"`
			W       int    `json:"w"`
			H       int    `json:"h"`
			SHA256  string `json:"sha256"`
			Key     string `json:"key"`
		} `json:"cases"`
	}
	b, err := os.ReadFile(filepath.Join(root, "resize.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("resize.json: %v", err)
	}
	tensors := readSafetensors(t, filepath.Join(root, "resize.safetensors"))
	srcs := map[string]*Image{}
	for _, c := range idx.Cases {
		src := srcs[c.Src]
		if src == nil {
			if c.SrcFile != "" {
				raw, err := os.ReadFile(filepath.Join(root, c.SrcFile))
				if err != nil {
					t.Fatal(err)
				}
				if src, err = DecodeImage(raw); err != nil {
					t.Fatal(err)
				}
			} else {
				s, ok := tensors["src:"+c.Src]
				if !ok {
					t.Fatalf("resize.safetensors lacks src:%s", c.Src)
				}
				src = &Image{W: s.Shape[1], H: s.Shape[0], Pix: s.Raw}
			}
			srcs[c.Src] = src
		}
		got := ResizeBilinear(src, c.W, c.H)
		if w, ok := tensors[c.Key]; ok {
			if !bytes.Equal(got.Pix, w.Raw) {
				t.Errorf("%s %dx%d -> %dx%d: max |diff| %d vs Pillow", c.Src, src.W, src.H, c.W, c.H, maxAbsDiff(got.Pix, w.Raw))
			}
		} else if sha256Hex(got.Pix) != c.SHA256 {
			t.Errorf("%s %dx%d -> %dx%d: sha256 differs from Pillow's", c.Src, src.W, src.H, c.W, c.H)
		}
	}
	t.Logf("%d resize cases compared", len(idx.Cases))
}
