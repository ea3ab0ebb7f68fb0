package data

import (
	"image"
	"image/color"
)

// Two conversions to RGB happen in HF, depending on the entry point:
//
//   - Idefics2Processor (every version since 4.40) passes each image through load_image,
//     which applies the EXIF orientation and then Pillow's convert("RGB"): alpha is simply
//     dropped (a transparent pixel keeps whatever colour it stores), palettes are looked up,
//     gray is replicated. This is AlphaDrop, and what DecodeImage does by default.
//   - The image processor called on its own (convert_rgb) composites images that have an
//     alpha channel or a transparency key over opaque white first. This is AlphaOverWhite.
//
// The integer formulas below are Pillow's, so a CMYK pixel, a 16-bit gray pixel or a
// half-transparent one ends up with exactly the value HF computes.

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

// AlphaMode says what happens to transparency on the way to RGB.
type AlphaMode int

const (
	// AlphaDrop ignores alpha, like Pillow's convert("RGB") in HF's load_image.
	AlphaDrop AlphaMode = iota
	// AlphaOverWhite composites over white, like the image processor's convert_rgb.
	AlphaOverWhite
)

// pixelSink writes one straight-alpha pixel according to the mode.
type pixelSink struct {
	pix  []uint8
	mode AlphaMode
}

func (s pixelSink) put(i int, r, g, b, a uint8) {
	p := s.pix[i*3 : i*3+3]
	if s.mode == AlphaOverWhite && a != 255 {
		lut := &overWhiteLUT[a]
		p[0], p[1], p[2] = lut[r], lut[g], lut[b]
		return
	}
	p[0], p[1], p[2] = r, g, b
}

// FromGoImage converts a decoded Go image to RGB with Pillow's conversion rules. Concrete
// types are handled directly; anything else goes through color.NRGBAModel.
func FromGoImage(src image.Image, mode AlphaMode) *Image {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewImage(w, h)
	p := out.Pix
	sink := pixelSink{p, mode}
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
				c := color.NRGBA{s[0], s[1], s[2], s[3]}
				if s[3] != 255 {
					c = color.NRGBAModel.Convert(color.RGBA{s[0], s[1], s[2], s[3]}).(color.NRGBA)
				}
				sink.put(y*w+x, c.R, c.G, c.B, c.A)
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*4 : y*m.Stride+x*4+4]
				sink.put(y*w+x, s[0], s[1], s[2], s[3])
			}
		}
	case *image.RGBA64:
		// Pillow reads 16-bit colour PNGs keeping the high byte of each sample.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*8 : y*m.Stride+x*8+8]
				if s[6] == 255 && s[7] == 255 {
					sink.put(y*w+x, s[0], s[2], s[4], 255)
					continue
				}
				c := color.NRGBA64Model.Convert(m.RGBA64At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				sink.put(y*w+x, uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8), uint8(c.A>>8))
			}
		}
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				s := m.Pix[y*m.Stride+x*8 : y*m.Stride+x*8+8]
				sink.put(y*w+x, s[0], s[2], s[4], s[6])
			}
		}
	case *image.Paletted:
		var pal [256][3]uint8
		tmp := pixelSink{make([]uint8, 3), mode}
		for j, c := range m.Palette {
			if j >= 256 {
				break
			}
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			tmp.put(0, n.R, n.G, n.B, n.A)
			pal[j] = [3]uint8{tmp.pix[0], tmp.pix[1], tmp.pix[2]}
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
				sink.put(y*w+x, c.R, c.G, c.B, c.A)
			}
		}
	}
	return out
}
