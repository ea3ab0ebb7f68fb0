package data

// JPEG goes through libjpeg (libjpeg-turbo on Debian, the same code Pillow's wheels bundle)
// because Go's image/jpeg upsamples chroma and runs its IDCT differently: its pixels are off
// by up to tens of levels from Pillow's on 4:2:0 images, which is not the input the model was
// trained on. The settings mirror Pillow's decoder: islow IDCT, fancy upsampling, RGB output
// for colour, gray for gray, CMYK for 4-channel files (read as Adobe-inverted, as Pillow
// assumes).
//
// Two checks mirror Pillow's refusals: the declared size is checked against the pixel limit
// right after the header is read, before any pixel buffer exists; and a file whose data ends
// early is refused with Pillow's "image file is truncated", although libjpeg would hand back
// the missing rows as gray (Pillow stops when its decoder asks for bytes past the end).

/*
#cgo LDFLAGS: -ljpeg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

struct idf_err {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
	int truncated;
};

static void idf_error_exit(j_common_ptr cinfo) {
	struct idf_err *e = (struct idf_err *)cinfo->err;
	(*cinfo->err->format_message)(cinfo, e->msg);
	longjmp(e->jump, 1);
}

// Corrupt-data warnings are not fatal for Pillow either: it keeps what was decoded, and so do
// we, silently. Running out of data is: the memory source reports it as JWRN_JPEG_EOF and
// inserts a fake end marker, which is remembered here and refused after decoding.
static void idf_emit_message(j_common_ptr cinfo, int level) {
	struct idf_err *e = (struct idf_err *)cinfo->err;
	if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
}

// idf_decode decodes buf into a malloc'ed buffer of w*h*comps bytes. comps is 1 (gray),
// 3 (RGB) or 4 (CMYK, inverted as stored by Adobe). On failure it returns NULL and fills msg;
// comps is then -1 when the declared w×h exceeds max_pixels (> 0), -2 when the data ends early.
static unsigned char *idf_decode(const unsigned char *buf, unsigned long len, long long max_pixels, int *w, int *h, int *comps, char *msg) {
	struct jpeg_decompress_struct cinfo;
	struct idf_err err;
	unsigned char *volatile out = NULL;
	cinfo.err = jpeg_std_error(&err.pub);
	err.pub.error_exit = idf_error_exit;
	err.pub.emit_message = idf_emit_message;
	err.truncated = 0;
	*comps = 0;
	if (setjmp(err.jump)) {
		strncpy(msg, err.msg, JMSG_LENGTH_MAX - 1);
		msg[JMSG_LENGTH_MAX - 1] = 0;
		jpeg_destroy_decompress(&cinfo);
		free(out);
		return NULL;
	}
	jpeg_create_decompress(&cinfo);
	jpeg_mem_src(&cinfo, buf, len);
	jpeg_read_header(&cinfo, TRUE);
	if (max_pixels > 0) {
		long long pw = cinfo.image_width > 0 ? cinfo.image_width : 1;
		long long ph = cinfo.image_height > 0 ? cinfo.image_height : 1;
		if (pw * ph > max_pixels) {
			*w = cinfo.image_width;
			*h = cinfo.image_height;
			*comps = -1;
			jpeg_destroy_decompress(&cinfo);
			return NULL;
		}
	}
	switch (cinfo.num_components) {
	case 1:
		cinfo.out_color_space = JCS_GRAYSCALE;
		break;
	case 4:
		cinfo.out_color_space = JCS_CMYK;
		break;
	default:
		cinfo.out_color_space = JCS_RGB;
	}
	cinfo.dct_method = JDCT_ISLOW;
	cinfo.do_fancy_upsampling = TRUE;
	jpeg_start_decompress(&cinfo);
	*w = cinfo.output_width;
	*h = cinfo.output_height;
	*comps = cinfo.output_components;
	size_t stride = (size_t)cinfo.output_width * cinfo.output_components;
	out = malloc(stride * cinfo.output_height);
	if (!out) {
		strcpy(msg, "out of memory");
		jpeg_destroy_decompress(&cinfo);
		return NULL;
	}
	while (cinfo.output_scanline < cinfo.output_height) {
		JSAMPROW row = out + stride * cinfo.output_scanline;
		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	// Only data missing before the last row counts, as in Pillow, whose decoder stops asking
	// for bytes once the rows are out (a missing end marker alone is accepted).
	int truncated = err.truncated;
	jpeg_finish_decompress(&cinfo);
	jpeg_destroy_decompress(&cinfo);
	if (truncated) {
		*comps = -2;
		free(out);
		return NULL;
	}
	return out;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

func decodeJPEG(b []byte, maxPixels int64) (*Image, error) {
	if len(b) == 0 {
		return nil, errors.New("empty JPEG")
	}
	var w, h, comps C.int
	msg := (*C.char)(C.malloc(C.JMSG_LENGTH_MAX))
	defer C.free(unsafe.Pointer(msg))
	cbuf := C.CBytes(b)
	defer C.free(cbuf)
	out := C.idf_decode((*C.uchar)(cbuf), C.ulong(len(b)), C.longlong(maxPixels), &w, &h, &comps, msg)
	switch {
	case out == nil && comps == -1:
		return nil, pixelLimitError(int(w), int(h), maxPixels)
	case out == nil && comps == -2:
		return nil, ErrTruncated
	case out == nil:
		return nil, errors.New("JPEG: " + C.GoString(msg))
	}
	defer C.free(unsafe.Pointer(out))
	n := int(w) * int(h) * int(comps)
	raw := unsafe.Slice((*uint8)(unsafe.Pointer(out)), n)
	img := NewImage(int(w), int(h))
	switch comps {
	case 3:
		copy(img.Pix, raw)
	case 1:
		for i, v := range raw {
			img.Pix[i*3], img.Pix[i*3+1], img.Pix[i*3+2] = v, v, v
		}
	case 4:
		// Pillow reads 4-component JPEGs as inverted CMYK ("CMYK;I"), then converts to RGB.
		for i := 0; i < int(w)*int(h); i++ {
			s := raw[i*4 : i*4+4]
			img.Pix[i*3], img.Pix[i*3+1], img.Pix[i*3+2] = cmykToRGB(255-s[0], 255-s[1], 255-s[2], 255-s[3])
		}
	default:
		return nil, errors.New("JPEG: unsupported number of components")
	}
	return img, nil
}
