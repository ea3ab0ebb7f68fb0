package cauldron

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
)

// The package never decodes; tests and benchmarks stand in for the data package with the
// standard library's decoders.

// decodeImages fully decodes every image, the way a processing function would.
func decodeImages(_ context.Context, r *Record) ([]image.Image, error) {
	out := make([]image.Image, 0, len(r.Images))
	for i, im := range r.Images {
		m, _, err := image.Decode(bytes.NewReader(im.Bytes))
		if err != nil {
			return nil, Skip(ReasonBadImage, fmt.Errorf("image %d: %w", i, err))
		}
		out = append(out, m)
	}
	return out, nil
}

// validateHeaders is a cheap Validate hook: it reads only the image headers.
func validateHeaders(r *Record) error {
	for i, im := range r.Images {
		if _, _, err := image.DecodeConfig(bytes.NewReader(im.Bytes)); err != nil {
			return fmt.Errorf("image %d: %w", i, err)
		}
		if _, err := decodeImages(context.Background(), &Record{Images: []Image{im}}); err != nil {
			return err
		}
	}
	return nil
}
