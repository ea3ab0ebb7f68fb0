package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/gif"
	"image/png"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
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

// DecodeImage decodes image bytes into RGB with HF's convert_rgb semantics (see convert.go).
// Multi-frame files (GIF, TIFF) yield their first frame, as Pillow's Image.open does. WebP
// goes through golang.org/x/image/webp, whose lossy YUV->RGB conversion is not libwebp's:
// lossless WebP is exact, lossy WebP may differ from Pillow by a few levels.
func DecodeImage(b []byte) (*Image, error) {
	f := SniffFormat(b)
	var (
		m   image.Image
		err error
	)
	switch f {
	case FormatJPEG:
		return decodeJPEG(b)
	case FormatPNG:
		return decodePNG(b)
	case FormatGIF:
		return decodeGIF(b)
	case FormatWebP:
		m, err = webp.Decode(bytes.NewReader(b))
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
	return FromGoImage(m), nil
}

// decodePNG handles the one PNG case where Go and Pillow disagree on meaning: a truecolour
// PNG with a tRNS colour key. Go turns the key colour transparent; Pillow keeps mode RGB and
// HF's convert_rgb returns RGB images untouched, so the key is ignored.
func decodePNG(b []byte) (*Image, error) {
	m, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("png: %w", err)
	}
	const colorTypeOffset = 8 + 8 + 9 // signature, IHDR length+type, width/height/bit depth
	if len(b) > colorTypeOffset && b[colorTypeOffset] == 2 {
		switch t := m.(type) {
		case *image.NRGBA:
			for i := 3; i < len(t.Pix); i += 4 {
				t.Pix[i] = 255
			}
		case *image.NRGBA64:
			for i := 6; i < len(t.Pix); i += 8 {
				t.Pix[i], t.Pix[i+1] = 255, 255
			}
		}
	}
	return FromGoImage(m), nil
}

// decodeGIF returns the first frame on the logical screen. Pillow fills the screen outside
// the first frame with the transparent index when there is one (white after convert_rgb),
// else with the background colour index.
func decodeGIF(b []byte) (*Image, error) {
	g, err := gif.DecodeAll(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gif: %w", err)
	}
	if len(g.Image) == 0 {
		return nil, errors.New("gif: no frames")
	}
	fr := g.Image[0]
	screen := image.Rect(0, 0, g.Config.Width, g.Config.Height)
	if fr.Bounds() == screen {
		return FromGoImage(fr), nil
	}
	canvas := image.NewPaletted(screen, fr.Palette)
	fill := uint8(g.BackgroundIndex)
	for i, c := range fr.Palette {
		if _, _, _, a := c.RGBA(); a == 0 {
			fill = uint8(i)
			break
		}
	}
	for i := range canvas.Pix {
		canvas.Pix[i] = fill
	}
	draw.Draw(canvas, fr.Bounds(), fr, fr.Bounds().Min, draw.Src)
	return FromGoImage(canvas), nil
}
