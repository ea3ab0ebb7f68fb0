package data

import (
	"bytes"
	"encoding/binary"
)

// EXIF orientation, applied like Pillow's ImageOps.exif_transpose (which HF's load_image
// calls): a phone photo stored sideways with an orientation tag reaches the model upright.

// EXIFOrientation returns the orientation tag (1..8) found in the file's EXIF data, or 1.
// It reads JPEG APP1 "Exif", PNG eXIf, WebP EXIF chunks and a TIFF file's own first IFD.
func EXIFOrientation(b []byte, f Format) int {
	var tiffData []byte
	switch f {
	case FormatJPEG:
		tiffData = jpegExif(b)
	case FormatPNG:
		tiffData = pngChunk(b, "eXIf")
	case FormatWebP:
		tiffData = webpChunk(b, "EXIF")
		tiffData = bytes.TrimPrefix(tiffData, []byte("Exif\x00\x00"))
	case FormatTIFF:
		tiffData = b
	}
	o := tiffOrientation(tiffData)
	if o < 1 || o > 8 {
		return 1
	}
	return o
}

func jpegExif(b []byte) []byte {
	pos := 2
	for pos+4 <= len(b) {
		if b[pos] != 0xFF {
			return nil
		}
		marker := b[pos+1]
		if marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 {
			pos += 2
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan: no more headers
			return nil
		}
		n := int(binary.BigEndian.Uint16(b[pos+2:]))
		if pos+2+n > len(b) {
			return nil
		}
		seg := b[pos+4 : pos+2+n]
		if marker == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return seg[6:]
		}
		pos += 2 + n
	}
	return nil
}

func pngChunk(b []byte, typ string) []byte {
	pos := 8
	for pos+8 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[pos:]))
		t := string(b[pos+4 : pos+8])
		if pos+12+n > len(b) || n < 0 {
			return nil
		}
		if t == typ {
			return b[pos+8 : pos+8+n]
		}
		if t == "IEND" {
			return nil
		}
		// An eXIf after the image data counts too: Pillow's getexif loads the image to find it.
		pos += 12 + n
	}
	return nil
}

func webpChunk(b []byte, typ string) []byte {
	pos := 12
	for pos+8 <= len(b) {
		n := int(binary.LittleEndian.Uint32(b[pos+4:]))
		if pos+8+n > len(b) || n < 0 {
			return nil
		}
		if string(b[pos:pos+4]) == typ {
			return b[pos+8 : pos+8+n]
		}
		pos += 8 + n + n&1
	}
	return nil
}

// tiffOrientation reads tag 0x0112 of the first IFD of a TIFF structure.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	ifd := int(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > len(t) {
		return 1
	}
	n := int(bo.Uint16(t[ifd:]))
	for i := 0; i < n; i++ {
		e := ifd + 2 + 12*i
		if e+12 > len(t) {
			return 1
		}
		if bo.Uint16(t[e:]) == 0x0112 {
			return int(bo.Uint16(t[e+8:]))
		}
	}
	return 1
}

// Orient applies an EXIF orientation (1..8) the way exif_transpose does.
func Orient(img *Image, o int) *Image {
	if o <= 1 || o > 8 {
		return img
	}
	W, H := img.W, img.H
	w, h := W, H
	if o >= 5 {
		w, h = H, W
	}
	out := NewImage(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var sx, sy int
			switch o {
			case 2: // mirror left-right
				sx, sy = W-1-x, y
			case 3: // rotate 180
				sx, sy = W-1-x, H-1-y
			case 4: // mirror top-bottom
				sx, sy = x, H-1-y
			case 5: // transpose
				sx, sy = y, x
			case 6: // rotate 90 clockwise
				sx, sy = y, H-1-x
			case 7: // transverse
				sx, sy = W-1-y, H-1-x
			case 8: // rotate 90 counter-clockwise
				sx, sy = W-1-y, x
			}
			copy(out.Pix[(y*w+x)*3:(y*w+x)*3+3], img.Pix[(sy*W+sx)*3:(sy*W+sx)*3+3])
		}
	}
	return out
}
