package data

import (
	"image"
	"image/color"
)

// HF's convert_rgb: an RGB image passes untouched; any other mode is converted to RGBA,
// alpha-composited over opaque white and the alpha dropped. The integer formulas below are the
// ones Pillow uses for those conversions, so a transparent pixel, a CMYK pixel or a 16-bit
// gray pixel ends up with exactly the value the model saw in training.

// overWhite is Pillow's alpha_composite(white, (c, a)) for one channel, 7-bit precision.
func overWhite(c, a uint32) uint8 {
	if a == 0 {
		return 255
	}
	const prec = 7
	blend := 255 * (255 - a)
	outa255 := a*255 + blend
	coef1 := a * 255 * 255 * (1 << prec) / outa255
	coef2 := 255*(1<<prec) - coef1
	t := c*coef1 + 255*coef2 + (0x80 << prec)
	return uint8((((t >> 8) + t) >> 8) >> prec)
}

// overWhiteLUT[a][c] caches overWhite: 64 KiB, filled once.
var overWhiteLUT = func() *[256][256]uint8 {
	var t [256][256]uint8
	for a := 0; a < 256; a++ {
		for c := 0; c < 256; c++ {
			t[a][c] = overWhite(uint32(c), uint32(a))
		}
	}
	return &t
}()

// cmykToRGB is Pillow's cmyk2rgb: each channel is (255-k) - (x*(255-k))/255 with its
// rounded division by 255.
func cmykToRGB(c, m, y, k uint8) (uint8, uint8, uint8) {
	nk := 255 - int32(k)
	f := func(x uint8) uint8 {
		t := int32(x)*nk + 128
		v := nk - (((t >> 8) + t) >> 8)
		if v < 0 {
			return 0
		}
		return uint8(v)
	}
	return f(c), f(m), f(y)
}

// gray16To8 is Pillow's I;16 -> L conversion used on the way to RGBA: it clips, it does not
// scale. A 16-bit grayscale PNG therefore turns almost white through HF's pipeline; we keep
// that because the point is to feed the model what HF feeds it.
func gray16To8(v uint16) uint8 {
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// FromGoImage converts a decoded Go image to RGB with HF's convert_rgb semantics. Concrete
// types are handled directly; anything else goes through color.NRGBAModel.
func FromGoImage(src image.Image) *Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewImage(w, h)
	p := out.Pix
	switch m := src.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				o := y*m.Stride + x*2
				v := gray16To8(uint16(m.Pix[o])<<8 | uint16(m.Pix[o+1]))
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = v, v, v
			}
		}
	case *image.RGBA:
		// Go's decoders return RGBA only for opaque data, where premultiplied equals straight
		// alpha; a translucent RGBA from elsewhere is un-premultiplied first.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*4 : y*m.Stride+x*4+4]
				i := (y*w + x) * 3
				if s[3] == 255 {
					p[i], p[i+1], p[i+2] = s[0], s[1], s[2]
					continue
				}
				c := color.NRGBAModel.Convert(color.RGBA{s[0], s[1], s[2], s[3]}).(color.NRGBA)
				lut := &overWhiteLUT[c.A]
				p[i], p[i+1], p[i+2] = lut[c.R], lut[c.G], lut[c.B]
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*4 : y*m.Stride+x*4+4]
				lut := &overWhiteLUT[s[3]]
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = lut[s[0]], lut[s[1]], lut[s[2]]
			}
		}
	case *image.RGBA64:
		// Pillow reads 16-bit colour PNGs keeping the high byte of each sample.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*8 : y*m.Stride+x*8+8]
				i := (y*w + x) * 3
				if s[6] == 255 {
					p[i], p[i+1], p[i+2] = s[0], s[2], s[4]
					continue
				}
				c := color.NRGBA64Model.Convert(m.RGBA64At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				lut := &overWhiteLUT[c.A>>8]
				p[i], p[i+1], p[i+2] = lut[c.R>>8], lut[c.G>>8], lut[c.B>>8]
			}
		}
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*8 : y*m.Stride+x*8+8]
				lut := &overWhiteLUT[s[6]]
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = lut[s[0]], lut[s[2]], lut[s[4]]
			}
		}
	case *image.Paletted:
		var pal [256][3]uint8
		for j, c := range m.Palette {
			if j >= 256 {
				break
			}
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			lut := &overWhiteLUT[n.A]
			pal[j] = [3]uint8{lut[n.R], lut[n.G], lut[n.B]}
		}
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = pal[v][0], pal[v][1], pal[v][2]
			}
		}
	case *image.CMYK:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*4 : y*m.Stride+x*4+4]
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = cmykToRGB(s[0], s[1], s[2], s[3])
			}
		}
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(src.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				lut := &overWhiteLUT[c.A]
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = lut[c.R], lut[c.G], lut[c.B]
			}
		}
	}
	return out
}
