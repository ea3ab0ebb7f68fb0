package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

// thinImage is the image scripts/thin_images.py feeds HF: pixel byte i is (i*37+11) mod 256.
func thinImage(w, h int) *Image {
	img := NewImage(w, h)
	for i := range img.Pix {
		img.Pix[i] = uint8((i*37 + 11) % 256)
	}
	return img
}

// Issue 11, item 3: with image splitting, a 50×1 image panicked (index out of range in
// resize_c.go). HF's Idefics2ImageProcessorPil raises ZeroDivisionError on any image 1 pixel
// high, so it is refused with a clear error; images 1 pixel wide HF processes (their empty left
// crops become black), and so do we, byte for byte: the hashes are the uint8 crops of
// transformers 5.23.0 + Pillow 12.0.0 (scripts/thin_images.py).
func TestThinImagesAsHF(t *testing.T) {
	c := DefaultImageProcessorConfig()
	c.DoImageSplitting = true
	want := map[string][]string{
		"1x50": {"00028904ad407edb", "79a68fdb4298beb9", "00028904ad407edb", "50637ef274553db6", "a9c994e5cd3c60a8"},
		"1x2":  {"00028904ad407edb", "b0722d90962884c3", "00028904ad407edb", "2d66a821e511b78a", "e8c582e87dcf0729"},
		"2x2":  {"b0722d90962884c3", "2d66a821e511b78a", "ee202857ca227b88", "a2c904ab2b1958f9", "34eb7cedf854aaf6"},
		"3x2":  {"b0722d90962884c3", "8b5eb0b4cfadf135", "a2c904ab2b1958f9", "4715ca823d93677d", "42c77383e876b1a5"},
	}
	for name, hashes := range want {
		var w, h int
		fmt.Sscanf(name, "%dx%d", &w, &h)
		img := thinImage(w, h)
		if err := c.CheckImage(img); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		out := c.ProcessImage(img)
		for i, o := range out {
			sum := sha256.Sum256(o.Pix)
			if got := hex.EncodeToString(sum[:])[:16]; got != hashes[i] || o.W != 378 || o.H != 378 {
				t.Errorf("%s crop %d: %dx%d %s, HF 378x378 %s", name, i, o.W, o.H, got, hashes[i])
			}
		}
	}
	for _, wh := range [][2]int{{50, 1}, {1, 1}, {2, 1}} {
		img := thinImage(wh[0], wh[1])
		err := c.CheckImage(img)
		if !errors.Is(err, ErrImageShape) {
			t.Errorf("%dx%d with splitting: err = %v, want ErrImageShape", wh[0], wh[1], err)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%dx%d: ProcessImage panicked: %v", wh[0], wh[1], r)
				}
			}()
			c.ProcessImage(img)
		}()
		nc := c
		nc.DoImageSplitting = false
		if err := nc.CheckImage(img); err != nil {
			t.Errorf("%dx%d without splitting: %v (HF resizes it to 378×378)", wh[0], wh[1], err)
		}
	}
}

// The processor refuses the image with one error instead of panicking (the path generate and
// eval take).
func TestProcessorRefusesOnePixelHighImage(t *testing.T) {
	p := testProcessor(t, true, CompatTrained)
	_, err := p.EncodeText("<image>What is this?", []*Image{thinImage(50, 1)}, EncodeOptions{AddGenerationPrompt: true, Labels: LabelAll})
	if !errors.Is(err, ErrImageShape) {
		t.Fatalf("err = %v, want ErrImageShape", err)
	}
	t.Log(err)
}
