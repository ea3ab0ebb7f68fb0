package data

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// The C vertical pass and the fixed-window horizontal loops must agree with the plain Go
// implementation everywhere, including tiny images (narrower than the filter) and strong
// reductions (wide filters); Pillow itself is compared in TestResizeMatchesPillow.
func TestResizePathsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		w, h := 1+rng.IntN(200), 1+rng.IntN(200)
		src := NewImage(w, h)
		for j := range src.Pix {
			src.Pix[j] = uint8(rng.IntN(256))
		}
		ow, oh := 1+rng.IntN(400), 1+rng.IntN(400)
		if i%5 == 0 {
			ow = w
		}
		if i%7 == 0 {
			oh = h
		}
		a, b := ResizeBilinear(src, ow, oh), resizeBilinearGo(src, ow, oh)
		if a.W != b.W || a.H != b.H || !bytes.Equal(a.Pix, b.Pix) {
			t.Fatalf("%dx%d -> %dx%d: paths differ (max |diff| %d)", w, h, ow, oh, maxAbsDiff(a.Pix, b.Pix))
		}
	}
}

// BenchmarkResize times the resize alone on a page-sized and a photo-sized input (random
// pixels: the arithmetic does not depend on them).
func BenchmarkResize(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ w, h, ow, oh int }{{1240, 1754, 692, 980}, {1000, 872, 980, 854}, {4000, 3000, 980, 735}} {
		src := NewImage(c.w, c.h)
		for j := range src.Pix {
			src.Pix[j] = uint8(rng.IntN(256))
		}
		b.Run(fmt.Sprintf("%dx%d", c.w, c.h), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				ResizeBilinear(src, c.ow, c.oh)
			}
		})
	}
}
