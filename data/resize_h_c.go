package data

// The horizontal resampling pass in C with AVX2 intrinsics. Each output pixel reads its own
// window of input pixels, so the loop does not vectorize across outputs; instead one 128-bit
// lane holds one output pixel as four int32 sums (R, G, B and a zero), and a 256-bit register
// holds two outputs. A 16-byte load covers five taps of three channels; a byte shuffle spreads
// each tap's three bytes into the lane's int32s (zero-extending them), which are multiplied by
// that tap's weight and added. The arithmetic is Pillow's integer arithmetic (22-bit weights,
// int32 sums from half an ulp, shift and clamp), so the bytes equal the Go path's; the clamp
// is done by the saturating packs. Without AVX2 (or off x86-64) the Go loops run instead.
// All rows go through one cgo call: a call per row cost more than the row itself on small
// images.

/*
#cgo CFLAGS: -O3
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline uint8_t idf_clip8(int32_t v) {
	v >>= 22;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One output pixel from ks taps starting at p (3 bytes per pixel).
static inline void idf_h_px(uint8_t *d, const uint8_t *p, const int32_t *k, int ks) {
	int32_t r = 1 << 21, g = 1 << 21, b = 1 << 21;
	for (int j = 0; j < ks; j++, p += 3) {
		r += (int32_t)p[0] * k[j];
		g += (int32_t)p[1] * k[j];
		b += (int32_t)p[2] * k[j];
	}
	d[0] = idf_clip8(r);
	d[1] = idf_clip8(g);
	d[2] = idf_clip8(b);
}

#if defined(__x86_64__)
#include <immintrin.h>

// Sums two outputs' taps into one register: lane 0 is output a, lane 1 output b, whose windows
// start at pa and pb. kw holds, per tap, the two weights each repeated four times (built once
// per image: assembling them per pixel cost more than the multiplies). Taps are taken five at
// a time (one 16-byte load per window).
__attribute__((target("avx2"), always_inline)) static inline __m256i idf_h_pair(const uint8_t *pa, const uint8_t *pb,
                                                                  const __m256i *kw, int ks, const __m256i *shuf) {
	__m256i acc = _mm256_set1_epi32(1 << 21);
	for (int c = 0; c < ks; c += 5, pa += 15, pb += 15) {
		__m256i px = _mm256_inserti128_si256(
			_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)pa)),
			_mm_loadu_si128((const __m128i *)pb), 1);
		int n = ks - c < 5 ? ks - c : 5;
		for (int t = 0; t < n; t++)
			acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_shuffle_epi8(px, shuf[t]),
			                                               _mm256_loadu_si256(kw + c + t)));
	}
	return _mm256_srai_epi32(acc, 22);
}

// Rows [0,rows) of src (inRow bytes each) to out (outRow bytes each). Outputs [0,nvec) take
// the vector path (nvec a multiple of 4; their 16-byte loads stay inside the row), the rest
// the scalar one. Always inlined with a constant ks, so the tap loops unroll.
__attribute__((target("avx2"), always_inline)) static inline void idf_h_rows(
	uint8_t *out, const uint8_t *src, size_t inRow, size_t outRow, int rows, const int64_t *win,
	const int32_t *wk, const int ks, int outW, int nvec, __m256i *kw) {
	for (int x = 0; x < nvec; x += 2)
		for (int t = 0; t < ks; t++)
			_mm256_storeu_si256(kw + (size_t)x / 2 * ks + t, _mm256_setr_epi32(wk[x * ks + t], wk[x * ks + t], wk[x * ks + t], wk[x * ks + t],
			                                           wk[(x + 1) * ks + t], wk[(x + 1) * ks + t],
			                                           wk[(x + 1) * ks + t], wk[(x + 1) * ks + t]));
	__m256i shuf[5];
	for (int t = 0; t < 5; t++) {
		int8_t m[16];
		for (int i = 0; i < 16; i++) m[i] = -1; // -1: the shuffle writes a zero byte
		m[0] = 3 * t, m[4] = 3 * t + 1, m[8] = 3 * t + 2;
		__m128i v = _mm_loadu_si128((const __m128i *)m);
		shuf[t] = _mm256_broadcastsi128_si256(v);
	}
	// After the packs, lane 0 holds outputs a and c, lane 1 b and d (4 bytes each): gather
	// them in order into the low 128 bits, then drop every fourth (zero) byte.
	const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	const __m128i rgb = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
	for (int y = 0; y < rows; y++) {
		const uint8_t *row = src + (size_t)y * inRow;
		uint8_t *dst = out + (size_t)y * outRow;
		for (int x = 0; x < nvec; x += 4) {
			const __m256i *k = kw + (size_t)x / 2 * ks;
			__m256i ab = idf_h_pair(row + 3 * win[x], row + 3 * win[x + 1], k, ks, shuf);
			__m256i cd = idf_h_pair(row + 3 * win[x + 2], row + 3 * win[x + 3], k + ks, ks, shuf);
			__m256i w16 = _mm256_packs_epi32(ab, cd);
			__m256i b8 = _mm256_packus_epi16(w16, w16);
			__m128i v = _mm_shuffle_epi8(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b8, order)), rgb);
			_mm_storel_epi64((__m128i *)(dst + 3 * x), v);
			uint32_t hi = (uint32_t)_mm_extract_epi32(v, 2);
			memcpy(dst + 3 * x + 8, &hi, 4);
		}
		for (int x = nvec; x < outW; x++) idf_h_px(dst + 3 * x, row + 3 * win[x], wk + (size_t)x * ks, ks);
	}
}

__attribute__((target("avx2"))) static void idf_h_avx2(uint8_t *out, const uint8_t *src, size_t inRow,
                                                        size_t outRow, int rows, const int64_t *win,
                                                        const int32_t *wk, int ks, int outW, int nvec, void *scratch) {
	__m256i *kw = (__m256i *)scratch;
	switch (ks) { // the common filter sizes: up to 2x reduction, and up to 4x
	case 3: idf_h_rows(out, src, inRow, outRow, rows, win, wk, 3, outW, nvec, kw); break;
	case 5: idf_h_rows(out, src, inRow, outRow, rows, win, wk, 5, outW, nvec, kw); break;
	case 7: idf_h_rows(out, src, inRow, outRow, rows, win, wk, 7, outW, nvec, kw); break;
	case 9: idf_h_rows(out, src, inRow, outRow, rows, win, wk, 9, outW, nvec, kw); break;
	default: idf_h_rows(out, src, inRow, outRow, rows, win, wk, ks, outW, nvec, kw);
	}
}
#endif

// Returns 0 when the CPU lacks AVX2 and nothing was written.
static int idf_h(uint8_t *out, const uint8_t *src, size_t inRow, size_t outRow, int rows, const int64_t *win,
                 const int32_t *wk, int ks, int outW, int nvec, void *scratch) {
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2")) {
		idf_h_avx2(out, src, inRow, outRow, rows, win, wk, ks, outW, nvec, scratch);
		return 1;
	}
#endif
	return 0;
}
*/
import "C"

import "unsafe"

// resampleRowsFast is resampleRowsInto through the C kernel when it applies.
func resampleRowsFast(buf []byte, src *Image, hw axisWeights, y0, y1 int) *Image {
	outW, ks := len(hw.start), hw.ksize
	if hw.win == nil || y1 <= y0 {
		return resampleRowsInto(buf, src, hw, y0, y1)
	}
	inRow := src.W * 3
	// The vector path loads 16 bytes per five taps from the window start; outputs whose loads
	// would leave the row take the scalar path. Windows only move right, so this is a prefix.
	chunks := (ks + 4) / 5
	nvec := 0
	for nvec < outW && hw.win[nvec]*3+15*(chunks-1)+16 <= inRow {
		nvec++
	}
	nvec &^= 3
	win := make([]int64, outW)
	for i, v := range hw.win {
		win[i] = int64(v)
	}
	// Per pair of vector outputs and per tap, eight int32 weights (see idf_h_pair).
	scratch := make([]int32, nvec*ks*4+8)
	out := &Image{W: outW, H: y1 - y0}
	if n := outW * (y1 - y0) * 3; cap(buf) >= n {
		out.Pix = buf[:n]
	} else {
		out.Pix = make([]byte, n)
	}
	ok := C.idf_h((*C.uint8_t)(unsafe.Pointer(&out.Pix[0])), (*C.uint8_t)(unsafe.Pointer(&src.Pix[y0*inRow])),
		C.size_t(inRow), C.size_t(outW*3), C.int(y1-y0), (*C.int64_t)(unsafe.Pointer(&win[0])),
		(*C.int32_t)(unsafe.Pointer(&hw.wk[0])), C.int(ks), C.int(outW), C.int(nvec), unsafe.Pointer(&scratch[0]))
	if ok == 0 {
		return resampleRowsInto(buf, src, hw, y0, y1)
	}
	return out
}
