//go:build !cgo

package data

import (
	"bytes"
	"image/jpeg"
)

// JPEGDecoder names the JPEG decoder this binary uses. Without cgo it is Go's image/jpeg,
// whose pixels differ from Pillow's (see jpeg_cgo.go); builds of this toolkit use cgo anyway
// for the tokenizer, so this exists only to keep the package compiling.
const JPEGDecoder = "image/jpeg (pure Go, not Pillow-exact)"

func decodeJPEG(b []byte) (*Image, error) {
	m, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return FromGoImage(m, AlphaDrop), nil
}
