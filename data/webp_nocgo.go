//go:build !cgo

package data

import (
	"bytes"

	"golang.org/x/image/webp"
)

// Without cgo, WebP falls back to golang.org/x/image/webp: lossless files are exact, lossy
// ones differ from Pillow's libwebp by up to tens of levels (no fancy chroma upsampling).
func decodeWebP(b []byte, mode AlphaMode) (*Image, error) {
	m, err := webp.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return FromGoImage(m, mode), nil
}
