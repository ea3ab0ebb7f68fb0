package data

import "fmt"

// Image is an 8-bit RGB image with rows packed top to bottom, 3 bytes per pixel (HWC). It is
// what HF's image processor sees after convert_rgb: every decoder in this package produces it,
// so the resize and normalize loops never go through the image.Image interface.
type Image struct {
	W, H int
	Pix  []uint8 // len = W*H*3
}

// NewImage allocates a black W×H image.
func NewImage(w, h int) *Image {
	return &Image{W: w, H: h, Pix: make([]uint8, w*h*3)}
}

// Crop copies the region [x0,x1)×[y0,y1); splitting needs real copies because each crop is
// resized on its own.
func (m *Image) Crop(x0, y0, x1, y1 int) *Image {
	out := NewImage(x1-x0, y1-y0)
	rowBytes := out.W * 3
	for y := y0; y < y1; y++ {
		copy(out.Pix[(y-y0)*rowBytes:(y-y0+1)*rowBytes], m.Pix[(y*m.W+x0)*3:])
	}
	return out
}

func (m *Image) String() string { return fmt.Sprintf("%dx%d RGB", m.W, m.H) }
