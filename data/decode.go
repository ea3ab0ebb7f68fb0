package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/png"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// Format is an image container format recognised by its leading bytes.
type Format string

const (
	FormatJPEG    Format = "jpeg"
	FormatPNG     Format = "png"
	FormatGIF     Format = "gif"
	FormatWebP    Format = "webp"
	FormatBMP     Format = "bmp"
	FormatTIFF    Format = "tiff"
	FormatUnknown Format = ""
)

// SniffFormat looks at the magic bytes only; file names in datasets are not trustworthy.
func SniffFormat(b []byte) Format {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return FormatJPEG
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return FormatGIF
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return FormatWebP
	case bytes.HasPrefix(b, []byte("BM")):
		return FormatBMP
	case bytes.HasPrefix(b, []byte("II*\x00")), bytes.HasPrefix(b, []byte("MM\x00*")):
		return FormatTIFF
	}
	return FormatUnknown
}

// DecodeOptions selects between HF's two entry points (see convert.go).
type DecodeOptions struct {
	Alpha AlphaMode
	// EXIFOrientation applies the EXIF orientation tag, as HF's load_image does.
	EXIFOrientation bool
}

// ProcessorDecode is what Idefics2Processor does to an image it is given: EXIF orientation,
// then convert("RGB") (alpha dropped). ImageProcessorDecode is the image processor called on
// its own: no orientation, transparency over white.
var (
	ProcessorDecode      = DecodeOptions{Alpha: AlphaDrop, EXIFOrientation: true}
	ImageProcessorDecode = DecodeOptions{Alpha: AlphaOverWhite}
)

// DecodeImage decodes image bytes the way Idefics2Processor sees them (ProcessorDecode).
func DecodeImage(b []byte) (*Image, error) { return DecodeImageWith(b, ProcessorDecode) }

// DecodeImageWith decodes PNG, JPEG, GIF, WebP, BMP or TIFF into RGB. Multi-frame files yield
// their first frame, as Pillow's Image.open does. JPEG and WebP go through the C libraries
// Pillow itself uses (libjpeg-turbo, libwebp), the others through Go's decoders, whose output
// for these lossless formats is the same. The declared size is checked against
// MaxImagePixels before decoding (limits.go).
func DecodeImageWith(b []byte, opt DecodeOptions) (*Image, error) {
	f := SniffFormat(b)
	var (
		img *Image
		m   image.Image
		err error
	)
	limit := MaxImagePixels()
	if err := checkHeaderSize(b, f, limit); err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	switch f {
	case FormatJPEG:
		img, err = decodeJPEG(b, limit)
	case FormatPNG:
		m, err = png.Decode(bytes.NewReader(b))
	case FormatGIF:
		img, err = decodeGIF(b, opt.Alpha)
	case FormatWebP:
		img, err = decodeWebP(b, opt.Alpha, limit)
	case FormatBMP:
		m, err = bmp.Decode(bytes.NewReader(b))
	case FormatTIFF:
		m, err = tiff.Decode(bytes.NewReader(b))
	default:
		n := min(len(b), 8)
		return nil, fmt.Errorf("unrecognised image format (first bytes % x); supported: JPEG, PNG, GIF, WebP, BMP, TIFF", b[:n])
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f, err)
	}
	if img == nil {
		img = FromGoImage(m, opt.Alpha)
	}
	if opt.EXIFOrientation {
		img = Orient(img, EXIFOrientation(b, f))
	}
	return img, nil
}

// decodeGIF returns the first frame on the logical screen. Go's decoder blanks the colour of
// the transparent palette index; Pillow keeps it, and convert("RGB") shows it, so with
// AlphaDrop the stored colour is restored from the file's colour table. Outside the first
// frame Pillow fills with the transparent index when there is one, else the background index.
func decodeGIF(b []byte, mode AlphaMode) (*Image, error) {
	g, err := gif.DecodeAll(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if len(g.Image) == 0 {
		return nil, errors.New("no frames")
	}
	fr := g.Image[0]
	pal := fr.Palette
	transparent := -1
	for i, c := range pal {
		if _, _, _, a := c.RGBA(); a == 0 {
			transparent = i
			break
		}
	}
	if transparent >= 0 && mode == AlphaDrop {
		if raw := gifFirstColorTable(b); transparent < len(raw)/3 {
			pal = append(color.Palette(nil), pal...)
			t := raw[transparent*3 : transparent*3+3]
			pal[transparent] = color.NRGBA{t[0], t[1], t[2], 255}
		}
	}
	screen := image.Rect(0, 0, g.Config.Width, g.Config.Height)
	canvas := image.NewPaletted(screen, pal)
	if fr.Bounds() != screen {
		fill := uint8(g.BackgroundIndex)
		if transparent >= 0 {
			fill = uint8(transparent)
		}
		for i := range canvas.Pix {
			canvas.Pix[i] = fill
		}
	}
	draw.Draw(canvas, fr.Bounds(), &image.Paletted{Pix: fr.Pix, Stride: fr.Stride, Rect: fr.Rect, Palette: pal}, fr.Bounds().Min, draw.Src)
	return FromGoImage(canvas, mode), nil
}

// gifFirstColorTable returns the colour table the first frame uses (its local table, else the
// global one) as packed RGB, or nil when the file is too short to tell.
func gifFirstColorTable(b []byte) []byte {
	if len(b) < 13 {
		return nil
	}
	var global []byte
	pos := 13
	if b[10]&0x80 != 0 {
		n := 3 << (int(b[10]&7) + 1)
		if pos+n > len(b) {
			return nil
		}
		global = b[pos : pos+n]
		pos += n
	}
	for pos < len(b) {
		switch b[pos] {
		case 0x21: // extension: label, then sub-blocks
			pos += 2
			for pos < len(b) && b[pos] != 0 {
				pos += int(b[pos]) + 1
			}
			pos++
		case 0x2C: // image descriptor
			if pos+10 > len(b) {
				return global
			}
			packed := b[pos+9]
			if packed&0x80 != 0 {
				n := 3 << (int(packed&7) + 1)
				if pos+10+n <= len(b) {
					return b[pos+10 : pos+10+n]
				}
			}
			return global
		default:
			return global
		}
	}
	return global
}
