package data

import (
	"errors"
	"fmt"
)

// Images one pixel high (or with no pixels) cannot be split: HF's Idefics2 image processor
// splits at height // 2, so the top crops are 0 pixels high, and its resize rule divides by
// that height (ZeroDivisionError). One pixel wide is different: the left crops are 0 pixels
// wide, the rule computes an aspect ratio of 0, and Pillow resizes the empty crops to black
// 378×378 images, which ResizeBilinear reproduces (see resize.go). So a 50×1 image is refused
// with image splitting, as HF refuses it, and a 1×50 image is processed as HF does.

// ErrImageShape is wrapped by the error of an image the processor cannot take.
var ErrImageShape = errors.New("image cannot be processed")

// CheckImage reports whether ProcessImage can process img as HF would.
func (c ImageProcessorConfig) CheckImage(img *Image) error {
	switch {
	case img == nil || img.W < 1 || img.H < 1:
		w, h := 0, 0
		if img != nil {
			w, h = img.W, img.H
		}
		return fmt.Errorf("%w: it is %d×%d pixels", ErrImageShape, w, h)
	case c.DoImageSplitting && img.H < 2:
		return fmt.Errorf("%w: it is %d×%d pixels, and with image splitting its top crops would be 0 pixels high, which HF's Idefics2 image processor rejects too (division by zero in its resize rule); turn image splitting off or pad the image", ErrImageShape, img.W, img.H)
	}
	return nil
}
