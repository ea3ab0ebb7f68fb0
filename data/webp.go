package data

// WebP goes through libwebp's animation decoder, the call Pillow makes for every WebP file
// (still or animated): golang.org/x/image/webp upsamples chroma without libwebp's "fancy"
// filter, which puts lossy WebP pixels up to tens of levels away from Pillow's.

/*
#cgo LDFLAGS: -lwebpdemux -lwebp
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

// idf_webp_size reads the declared canvas size from the header (VP8X for animated files).
static int idf_webp_size(const unsigned char *buf, size_t len, int *w, int *h) {
	WebPBitstreamFeatures f;
	if (WebPGetFeatures(buf, len, &f) != VP8_STATUS_OK) return 0;
	*w = f.width;
	*h = f.height;
	return 1;
}

// idf_webp_first_frame decodes the first frame as straight RGBA on the canvas, into a
// malloc'ed buffer. has_alpha tells whether the file declares alpha.
static unsigned char *idf_webp_first_frame(const unsigned char *buf, size_t len, int *w, int *h, int *has_alpha) {
	WebPData data = {buf, len};
	WebPAnimDecoderOptions opt;
	if (!WebPAnimDecoderOptionsInit(&opt)) return NULL;
	opt.color_mode = MODE_RGBA;
	opt.use_threads = 0;
	WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &opt);
	if (!dec) return NULL;
	WebPAnimInfo info;
	uint8_t *frame = NULL;
	int ts = 0;
	unsigned char *out = NULL;
	if (WebPAnimDecoderGetInfo(dec, &info) && WebPAnimDecoderGetNext(dec, &frame, &ts)) {
		size_t n = (size_t)info.canvas_width * info.canvas_height * 4;
		out = malloc(n);
		if (out) {
			memcpy(out, frame, n);
			*w = info.canvas_width;
			*h = info.canvas_height;
			WebPBitstreamFeatures f;
			*has_alpha = WebPGetFeatures(buf, len, &f) == VP8_STATUS_OK ? f.has_alpha : 1;
		}
	}
	WebPAnimDecoderDelete(dec);
	return out;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

func decodeWebP(b []byte, mode AlphaMode, maxPixels int64) (*Image, error) {
	if len(b) == 0 {
		return nil, errors.New("empty file")
	}
	cbuf := C.CBytes(b)
	defer C.free(cbuf)
	var w, h, hasAlpha C.int
	if C.idf_webp_size((*C.uchar)(cbuf), C.size_t(len(b)), &w, &h) != 0 {
		if err := checkPixels(int(w), int(h), maxPixels); err != nil {
			return nil, err
		}
	}
	out := C.idf_webp_first_frame((*C.uchar)(cbuf), C.size_t(len(b)), &w, &h, &hasAlpha)
	if out == nil {
		return nil, errors.New("libwebp could not decode the file")
	}
	defer C.free(unsafe.Pointer(out))
	n := int(w) * int(h)
	raw := unsafe.Slice((*uint8)(unsafe.Pointer(out)), n*4)
	img := NewImage(int(w), int(h))
	sink := pixelSink{img.Pix, mode}
	for i := 0; i < n; i++ {
		p := raw[i*4 : i*4+4]
		a := p[3]
		if hasAlpha == 0 {
			a = 255 // Pillow opens such files as RGB ("RGBX"): nothing to composite
		}
		sink.put(i, p[0], p[1], p[2], a)
	}
	return img, nil
}
