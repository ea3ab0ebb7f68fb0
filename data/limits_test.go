package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// pngHeaderOnly is a PNG that declares w×h pixels and holds no image data: all a decompression
// bomb needs to announce itself.
func pngHeaderOnly(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

func withPixelLimit(t *testing.T, n int64) {
	old := MaxImagePixels()
	SetMaxImagePixels(n)
	t.Cleanup(func() { SetMaxImagePixels(old) })
}

// Issue 11, item 4: a PNG declaring 30000×30000 is refused from its header, with the declared
// size in the message, before a 2.7 GB pixel buffer is allocated; Pillow's limit is the default.
func TestPixelLimitRefusesFromHeader(t *testing.T) {
	if MaxImagePixels() != 178956970 {
		t.Fatalf("default limit %d, want Pillow's 178956970", MaxImagePixels())
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeImage(pngHeaderOnly(30000, 30000))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), "30000×30000") {
		t.Fatalf("err = %v, want the pixel limit naming 30000×30000", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing it allocated %d bytes", grew)
	}
	t.Log(err)
	// Pillow's own boundary: 178956970 pixels pass, one more row does not.
	if err := checkPixels(13377, 13378, DefaultMaxImagePixels); err != nil { // 178,957,506 > limit
		t.Log("13377×13378:", err)
	} else {
		t.Error("13377×13378 = 178957506 pixels passed")
	}
	if err := checkPixels(178956970, 1, DefaultMaxImagePixels); err != nil {
		t.Errorf("exactly the limit was refused: %v", err)
	}
}

// The limit holds on every decode path (each format's decoder) and is configurable.
func TestPixelLimitEveryFormat(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	enc := map[Format]func(*bytes.Buffer) error{
		FormatPNG:  func(b *bytes.Buffer) error { return png.Encode(b, img) },
		FormatGIF:  func(b *bytes.Buffer) error { return gif.Encode(b, img, nil) },
		FormatBMP:  func(b *bytes.Buffer) error { return bmp.Encode(b, img) },
		FormatTIFF: func(b *bytes.Buffer) error { return tiff.Encode(b, img, nil) },
	}
	files := map[Format][]byte{}
	for f, e := range enc {
		var b bytes.Buffer
		if err := e(&b); err != nil {
			t.Fatal(err)
		}
		files[f] = b.Bytes()
	}
	for f, name := range map[Format]string{FormatJPEG: "jpeg_420.jpg", FormatWebP: "lossy.webp"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "pillow", "decode", name))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = b
	}
	for f, b := range files {
		if _, err := DecodeImage(b); err != nil {
			t.Fatalf("%s under the default limit: %v", f, err)
		}
		withPixelLimit(t, 100)
		_, err := DecodeImage(b)
		if !errors.Is(err, ErrImageTooLarge) {
			t.Errorf("%s with a 100-pixel limit: err = %v", f, err)
		}
		if err := CheckImageHeader(b); !errors.Is(err, ErrImageTooLarge) {
			t.Errorf("%s: CheckImageHeader = %v", f, err)
		}
		SetMaxImagePixels(0) // none, like MAX_IMAGE_PIXELS = None
		if _, err := DecodeImage(b); err != nil {
			t.Errorf("%s without a limit: %v", f, err)
		}
		SetMaxImagePixels(DefaultMaxImagePixels)
	}
}

// Issue 11, item 6: JPEGs cut short are refused as Pillow refuses them ("image file is
// truncated"); a file missing only its end marker is accepted where Pillow accepts it. The
// outcomes are Pillow 12.0.0's on these files (Image.open(BytesIO(b[:cut])).load()).
func TestTruncatedJPEGRefusedAsPillow(t *testing.T) {
	cases := []struct {
		file   string
		cut    int // bytes removed from the end; -1 = half the file
		pillow bool
	}{
		{"jpeg_420.jpg", 0, true}, {"jpeg_420.jpg", 2, false}, {"jpeg_420.jpg", 100, false}, {"jpeg_420.jpg", -1, false},
		{"jpeg_progressive.jpg", 0, true}, {"jpeg_progressive.jpg", 2, false}, {"jpeg_progressive.jpg", 100, false}, {"jpeg_progressive.jpg", -1, false},
		{"jpeg_gray.jpg", 0, true}, {"jpeg_gray.jpg", 2, false}, {"jpeg_gray.jpg", 100, false}, {"jpeg_gray.jpg", -1, false},
		{"jpeg_cmyk.jpg", 0, true}, {"jpeg_cmyk.jpg", 2, true}, {"jpeg_cmyk.jpg", 100, false}, {"jpeg_cmyk.jpg", -1, false},
		{"hubble_deep_field.jpg", 0, true}, {"hubble_deep_field.jpg", 2, false}, {"hubble_deep_field.jpg", 100, false}, {"hubble_deep_field.jpg", -1, false},
	}
	for _, c := range cases {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "pillow", "decode", c.file))
		if err != nil {
			t.Fatal(err)
		}
		n := len(b) - c.cut
		if c.cut < 0 {
			n = len(b) / 2
		}
		_, err = DecodeImage(b[:n])
		switch {
		case c.pillow && err != nil:
			t.Errorf("%s[:%d]: Pillow decodes it, we fail: %v", c.file, n, err)
		case !c.pillow && !errors.Is(err, ErrTruncated):
			t.Errorf("%s[:%d]: Pillow says image file is truncated, we: %v", c.file, n, err)
		}
	}
}
