package data

import "testing"

// The size rule's examples from spec §3.2.
func TestResizeOutputSize(t *testing.T) {
	c := DefaultImageProcessorConfig()
	for _, tc := range []struct{ w, h, ww, wh int }{
		{2000, 1000, 980, 490},
		{640, 480, 640, 480},
		{300, 200, 378, 378},
		{1000, 100, 980, 378},
		{850, 1100, 757, 980},
		{1700, 2200, 757, 980},
		{100, 3000, 378, 980},
		{980, 980, 980, 980},
		{981, 981, 980, 980},
	} {
		if w, h := c.ResizeOutputSize(tc.w, tc.h); w != tc.ww || h != tc.wh {
			t.Errorf("%dx%d -> %dx%d, want %dx%d", tc.w, tc.h, w, h, tc.ww, tc.wh)
		}
	}
}

func TestProcessImageSplitOrder(t *testing.T) {
	img := NewImage(5, 3) // odd sizes: the right/bottom crops get the extra column/row
	for i := range img.Pix {
		img.Pix[i] = uint8(i / 3)
	}
	c := DefaultImageProcessorConfig()
	c.DoImageSplitting, c.DoResize = true, false
	parts := c.ProcessImage(img)
	want := [][4]int{{2, 1, 0, 0}, {3, 1, 2, 0}, {2, 2, 0, 1}, {3, 2, 2, 1}, {5, 3, 0, 0}}
	for i, p := range parts {
		w := want[i]
		if p.W != w[0] || p.H != w[1] || int(p.Pix[0]) != w[3]*5+w[2] {
			t.Errorf("part %d: %dx%d first pixel %d, want %dx%d at (%d,%d)", i, p.W, p.H, p.Pix[0], w[0], w[1], w[2], w[3])
		}
	}
}

func TestPixelLUT(t *testing.T) {
	l := NewPixelLUT(DefaultImageProcessorConfig())
	if l[0][0] != -1 || l[1][255] != 1 {
		t.Errorf("lut ends %v %v", l[0][0], l[1][255])
	}
	for u := 1; u < 256; u++ {
		if l[2][u] <= l[2][u-1] {
			t.Fatalf("lut not increasing at %d", u)
		}
	}
}
