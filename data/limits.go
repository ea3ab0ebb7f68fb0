package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"sync/atomic"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// Limits on what an image may ask of the decoder, as Pillow sets them. A 2.6 MB PNG can declare
// 30000×30000 pixels and take 6 GB to decode; Pillow refuses it from the header
// (DecompressionBombError above 2 × Image.MAX_IMAGE_PIXELS), and so does every decode path here,
// before any pixel buffer is allocated.

// DefaultMaxImagePixels is Pillow's refusal threshold: 2 × MAX_IMAGE_PIXELS = 2 × (1024 × 1024 ×
// 1024 / 4 / 3) pixels.
const DefaultMaxImagePixels int64 = 178_956_970

var maxImagePixels atomic.Int64

func init() { maxImagePixels.Store(DefaultMaxImagePixels) }

// SetMaxImagePixels sets the largest image (width × height) any decode accepts; 0 or less
// removes the limit, as MAX_IMAGE_PIXELS = None does in Pillow. It is process-wide, like
// Pillow's: set it once at startup (data.max_image_pixels, --max-image-pixels).
func SetMaxImagePixels(n int64) { maxImagePixels.Store(n) }

// MaxImagePixels is the current limit (0 or less: none).
func MaxImagePixels() int64 { return maxImagePixels.Load() }

// ErrImageTooLarge is wrapped by the error of an image above the pixel limit.
var ErrImageTooLarge = errors.New("image too large")

// ErrTruncated is Pillow's refusal of a file whose data ends early (its OSError text).
var ErrTruncated = errors.New("image file is truncated")

// checkPixels counts pixels as Pillow's _decompression_bomb_check does (a zero side counts 1).
func checkPixels(w, h int, limit int64) error {
	if limit <= 0 || int64(max(w, 1))*int64(max(h, 1)) <= limit {
		return nil
	}
	return pixelLimitError(w, h, limit)
}

func pixelLimitError(w, h int, limit int64) error {
	return fmt.Errorf("%w: it declares %d×%d = %d pixels, above the limit of %d (Pillow's decompression-bomb limit; raise data.max_image_pixels or --max-image-pixels to accept it)",
		ErrImageTooLarge, w, h, int64(max(w, 1))*int64(max(h, 1)), limit)
}

// checkHeaderSize reads the declared size of the formats Go decodes and checks it. JPEG and WebP
// are checked by their C decoders after their own header parse (jpeg.go, webp.go), so that a
// file libjpeg reads but Go's header parser does not is not refused for that reason.
func checkHeaderSize(b []byte, f Format, limit int64) error {
	if limit <= 0 {
		return nil
	}
	var (
		cfg image.Config
		err error
	)
	r := bytes.NewReader(b)
	switch f {
	case FormatPNG:
		cfg, err = png.DecodeConfig(r)
	case FormatGIF:
		cfg, err = gif.DecodeConfig(r)
	case FormatBMP:
		cfg, err = bmp.DecodeConfig(r)
	case FormatTIFF:
		cfg, err = tiff.DecodeConfig(r)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	return checkPixels(cfg.Width, cfg.Height, limit)
}

// CheckImageHeader checks the size an image file declares against the pixel limit without
// decoding it, so a command can refuse a file by name before loading anything. A header it
// cannot read is left for the decoder to report.
func CheckImageHeader(b []byte) error {
	f := SniffFormat(b)
	limit := MaxImagePixels()
	var (
		cfg image.Config
		err error
	)
	switch f {
	case FormatJPEG:
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(b))
	case FormatWebP:
		cfg, err = webp.DecodeConfig(bytes.NewReader(b))
	default:
		if err := checkHeaderSize(b, f, limit); err != nil && errors.Is(err, ErrImageTooLarge) {
			return fmt.Errorf("%s: %w", f, err)
		}
		return nil
	}
	if err != nil {
		return nil
	}
	if err := checkPixels(cfg.Width, cfg.Height, limit); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	return nil
}
