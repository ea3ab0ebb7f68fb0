package data

// The vertical resampling pass in C: each output row is a weighted sum of whole input rows, a
// loop GCC vectorizes (AVX2 where the CPU has it, chosen at run time by target_clones), about
// 3x faster than Go's scalar loop. The horizontal pass reads a different window for every
// output pixel, which autovectorization does not handle (plain compiled C was no faster than
// the Go loop); resize_h_c.go vectorizes it by hand. Integer sums do not depend on their order:
// the pixels are Pillow's, bit for bit (checked against the pure Go path and against Pillow in
// the tests).

/*
#cgo CFLAGS: -O3
#include <stdint.h>
#include <stddef.h>

// out[i] = clip8(2^21 + sum_j k[j]*src[j*stride + i]) for i < n; acc is scratch of n int32.
__attribute__((target_clones("avx2", "default")))
static void idf_weighted_rows(uint8_t *restrict out, const uint8_t *restrict src, size_t stride,
                              const int32_t *restrict k, int taps, int32_t *restrict acc, size_t n) {
	for (size_t i = 0; i < n; i++) acc[i] = 1 << 21;
	int j = 0;
	for (; j + 1 < taps; j += 2) {
		const uint8_t *restrict r0 = src + (size_t)j * stride;
		const uint8_t *restrict r1 = r0 + stride;
		int32_t k0 = k[j], k1 = k[j + 1];
		for (size_t i = 0; i < n; i++) acc[i] += (int32_t)r0[i] * k0 + (int32_t)r1[i] * k1;
	}
	if (j < taps) {
		const uint8_t *restrict r0 = src + (size_t)j * stride;
		int32_t k0 = k[j];
		for (size_t i = 0; i < n; i++) acc[i] += (int32_t)r0[i] * k0;
	}
	for (size_t i = 0; i < n; i++) {
		int32_t v = acc[i] >> 22;
		v = v < 0 ? 0 : v;
		out[i] = (uint8_t)(v > 255 ? 255 : v);
	}
}

// One pass: output row o (of rowlen bytes) is the weighted sum of input rows start[o] ..
// start[o]+n[o]-1 with weights k[o*ksize ...].
static void idf_pass(uint8_t *out, const uint8_t *src, size_t rowlen, int outRows,
                     const int64_t *start, const int64_t *n, const int32_t *k, int ksize, int32_t *acc) {
	for (int o = 0; o < outRows; o++)
		idf_weighted_rows(out + (size_t)o * rowlen, src + (size_t)start[o] * rowlen, rowlen,
		                  k + (size_t)o * ksize, (int)n[o], acc, rowlen);
}

*/
import "C"

import (
	"sync"
	"unsafe"
)

var midPool = sync.Pool{New: func() any { return new([]byte) }}

// pass runs idf_pass: out has len(w.start) rows of rowLen bytes.
func pass(out, src []byte, rowLen int, w axisWeights) {
	start := make([]int64, len(w.start))
	n := make([]int64, len(w.n))
	for i := range start {
		start[i], n[i] = int64(w.start[i]), int64(w.n[i])
	}
	acc := make([]int32, rowLen)
	C.idf_pass((*C.uint8_t)(unsafe.Pointer(&out[0])), (*C.uint8_t)(unsafe.Pointer(&src[0])), C.size_t(rowLen),
		C.int(len(start)), (*C.int64_t)(unsafe.Pointer(&start[0])), (*C.int64_t)(unsafe.Pointer(&n[0])),
		(*C.int32_t)(unsafe.Pointer(&w.k[0])), C.int(w.ksize), (*C.int32_t)(unsafe.Pointer(&acc[0])))
}

func resizeBilinear(src *Image, w, h int) *Image {
	needH, needV := w != src.W, h != src.H
	if !needH && !needV {
		out := NewImage(w, h)
		copy(out.Pix, src.Pix)
		return out
	}
	vert := bilinearWeights(src.H, h)
	cur := src
	if needH {
		first := vert.start[0]
		last := vert.start[h-1] + vert.n[h-1]
		if needV {
			// The intermediate only feeds the vertical pass: take it from a pool, unzeroed.
			buf := midPool.Get().(*[]byte)
			defer midPool.Put(buf)
			cur = resampleRowsFast(*buf, src, bilinearWeights(src.W, w), first, last)
			*buf = cur.Pix
		} else {
			cur = resampleRowsFast(nil, src, bilinearWeights(src.W, w), first, last)
		}
		for i := range vert.start {
			vert.start[i] -= first
		}
	}
	if !needV {
		return cur
	}
	out := NewImage(w, h)
	pass(out.Pix, cur.Pix, w*3, vert)
	return out
}
