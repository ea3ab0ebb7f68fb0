package data

import "math"

// Pillow's BILINEAR resampling on 8-bit images, reproduced bit for bit (spec §3.3).
//
// Pillow resamples separably with a triangle filter whose support widens with the reduction
// factor (so downscaling averages, it is not 4-tap bilinear), converts each output's weights to
// 22-bit fixed point, accumulates in int32 starting from half an ulp, and rounds the
// intermediate image to uint8 between the horizontal and the vertical pass. Any of these done
// differently (float weights, no intermediate rounding, vertical first) changes pixels by one
// level here and there, which is a different model input.

const (
	resamplePrecision = 22 // fixed-point fraction bits Pillow uses for 8-bit images
	resampleHalf      = 1 << (resamplePrecision - 1)
)

// axisWeights are the fixed-point filter taps for one axis: output i reads n[i] inputs from
// start[i], with weights k[i*ksize : i*ksize+n[i]].
//
// For speed the taps are also laid out on fixed windows of ksize inputs (win, wk): each
// output's window is shifted to stay inside the image and its extra taps weigh zero, which
// adds nothing to the integer sums, so every output runs the same unrolled loop.
type axisWeights struct {
	ksize int
	start []int
	n     []int
	k     []int32
	win   []int   // window start per output; nil when the image is narrower than ksize
	wk    []int32 // ksize weights per output, aligned to win
}

func triangle(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// bilinearWeights computes the taps exactly as Pillow's precompute_coeffs does for a whole-image
// box. The explicit float64() conversions stop the compiler from fusing multiply-adds on
// architectures that have FMA, which would change the last bit of some weights.
func bilinearWeights(inSize, outSize int) axisWeights {
	scale := float64(inSize) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := 1.0 * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	w := axisWeights{ksize: ksize, start: make([]int, outSize), n: make([]int, outSize), k: make([]int32, outSize*ksize)}
	tmp := make([]float64, ksize)
	ss := 1.0 / filterscale
	for xx := 0; xx < outSize; xx++ {
		center := float64((float64(xx) + 0.5) * scale)
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			t := triangle(float64((float64(x+xmin) - center + 0.5) * ss))
			tmp[x] = t
			ww += t
		}
		for x := 0; x < xmax; x++ {
			v := tmp[x]
			if ww != 0 {
				v /= ww
			}
			// Round half away from zero, as Pillow's normalize_coeffs_8bpc does.
			p := float64(v * (1 << resamplePrecision))
			if v < 0 {
				w.k[xx*ksize+x] = int32(-0.5 + p)
			} else {
				w.k[xx*ksize+x] = int32(0.5 + p)
			}
		}
		w.start[xx], w.n[xx] = xmin, xmax
	}
	if inSize >= ksize {
		w.win = make([]int, outSize)
		w.wk = make([]int32, outSize*ksize)
		for xx := range w.start {
			ws := min(w.start[xx], inSize-ksize)
			w.win[xx] = ws
			copy(w.wk[xx*ksize+w.start[xx]-ws:], w.k[xx*ksize:xx*ksize+w.n[xx]])
		}
	}
	return w
}

func clip8(acc int32) uint8 {
	if acc >= 1<<(resamplePrecision+8) {
		return 255
	}
	if acc <= 0 {
		return 0
	}
	return uint8(acc >> resamplePrecision)
}

// ResizeBilinear resizes src to w×h exactly as Pillow's Image.resize(..., BILINEAR) does on an
// RGB image (reducing_gap=None). Same size returns a copy, like Pillow. Both passes run in
// vectorized C where the CPU allows (resize_c.go, resize_h_c.go); the arithmetic is the same
// integer arithmetic. An empty source (a crop of a 1-pixel-wide image) gives black, as Pillow
// does.
func ResizeBilinear(src *Image, w, h int) *Image {
	if src.W <= 0 || src.H <= 0 || w <= 0 || h <= 0 {
		return NewImage(max(w, 0), max(h, 0))
	}
	return resizeBilinear(src, w, h)
}

// resizeBilinearGo is the all-Go implementation, kept as the cross-check of the C pass in the
// tests.
func resizeBilinearGo(src *Image, w, h int) *Image {
	needH := w != src.W
	needV := h != src.H
	if !needH && !needV {
		out := NewImage(w, h)
		copy(out.Pix, src.Pix)
		return out
	}
	vert := bilinearWeights(src.H, h)
	cur := src
	if needH {
		// Only the rows the vertical pass will read are resampled horizontally (as Pillow does).
		first := vert.start[0]
		last := vert.start[h-1] + vert.n[h-1]
		cur = resampleRows(src, bilinearWeights(src.W, w), first, last)
		for i := range vert.start {
			vert.start[i] -= first
		}
	}
	if needV {
		cur = resampleColumns(cur, vert, h)
	}
	return cur
}

// resampleRows runs the horizontal pass over source rows [y0,y1).
func resampleRows(src *Image, hw axisWeights, y0, y1 int) *Image {
	return resampleRowsInto(nil, src, hw, y0, y1)
}

// resampleRowsInto writes into buf when it is large enough (every byte is overwritten).
func resampleRowsInto(buf []byte, src *Image, hw axisWeights, y0, y1 int) *Image {
	outW := len(hw.start)
	out := &Image{W: outW, H: y1 - y0}
	if n := outW * (y1 - y0) * 3; cap(buf) >= n {
		out.Pix = buf[:n]
	} else {
		out.Pix = make([]byte, n)
	}
	inRow := src.W * 3
	for y := y0; y < y1; y++ {
		row := src.Pix[y*inRow : (y+1)*inRow]
		dst := out.Pix[(y-y0)*outW*3 : (y-y0+1)*outW*3]
		switch {
		case hw.win != nil && hw.ksize == 3:
			rowsK3(dst, row, hw)
		case hw.win != nil && hw.ksize == 5:
			rowsK5(dst, row, hw)
		default:
			rowsGeneric(dst, row, hw)
		}
	}
	return out
}

func rowsGeneric(dst, row []uint8, hw axisWeights) {
	for xx := range hw.start {
		n := hw.n[xx]
		k := hw.k[xx*hw.ksize : xx*hw.ksize+n]
		px := row[hw.start[xx]*3 : (hw.start[xx]+n)*3]
		r, g, b := int32(resampleHalf), int32(resampleHalf), int32(resampleHalf)
		for i, kv := range k {
			p := px[i*3 : i*3+3]
			r += int32(p[0]) * kv
			g += int32(p[1]) * kv
			b += int32(p[2]) * kv
		}
		d := dst[xx*3 : xx*3+3]
		d[0], d[1], d[2] = clip8(r), clip8(g), clip8(b)
	}
}

// rowsK3 is the upscaling (and mild downscaling) case: three taps per output.
func rowsK3(dst, row []uint8, hw axisWeights) {
	for xx, ws := range hw.win {
		p := row[ws*3 : ws*3+9]
		k := hw.wk[xx*3 : xx*3+3]
		k0, k1, k2 := k[0], k[1], k[2]
		d := dst[xx*3 : xx*3+3]
		d[0] = clip8(resampleHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2)
		d[1] = clip8(resampleHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2)
		d[2] = clip8(resampleHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2)
	}
}

// rowsK5 covers downscaling by up to 2x, the common case for photos and pages above 980 px.
func rowsK5(dst, row []uint8, hw axisWeights) {
	for xx, ws := range hw.win {
		p := row[ws*3 : ws*3+15]
		k := hw.wk[xx*5 : xx*5+5]
		k0, k1, k2, k3, k4 := k[0], k[1], k[2], k[3], k[4]
		d := dst[xx*3 : xx*3+3]
		d[0] = clip8(resampleHalf + int32(p[0])*k0 + int32(p[3])*k1 + int32(p[6])*k2 + int32(p[9])*k3 + int32(p[12])*k4)
		d[1] = clip8(resampleHalf + int32(p[1])*k0 + int32(p[4])*k1 + int32(p[7])*k2 + int32(p[10])*k3 + int32(p[13])*k4)
		d[2] = clip8(resampleHalf + int32(p[2])*k0 + int32(p[5])*k1 + int32(p[8])*k2 + int32(p[11])*k3 + int32(p[14])*k4)
	}
}

// resampleColumns runs the vertical pass. It walks whole rows (accumulating one input row at a
// time into a row of int32 sums) instead of Pillow's per-pixel column walk: integer sums do not
// depend on order, and rows are what the cache likes.
func resampleColumns(src *Image, vw axisWeights, outH int) *Image {
	rowLen := src.W * 3
	out := NewImage(src.W, outH)
	acc := make([]int32, rowLen)
	for yy := 0; yy < outH; yy++ {
		for i := range acc {
			acc[i] = resampleHalf
		}
		n := vw.n[yy]
		k := vw.k[yy*vw.ksize : yy*vw.ksize+n]
		y0 := vw.start[yy]
		j := 0
		for ; j+1 < n; j += 2 { // two input rows per sweep: half the accumulator traffic
			r0 := src.Pix[(y0+j)*rowLen : (y0+j+1)*rowLen]
			r1 := src.Pix[(y0+j+1)*rowLen : (y0+j+2)*rowLen]
			k0, k1 := k[j], k[j+1]
			a := acc[:len(r0)]
			r1 = r1[:len(r0)]
			for i, p := range r0 {
				a[i] += int32(p)*k0 + int32(r1[i])*k1
			}
		}
		if j < n {
			row := src.Pix[(y0+j)*rowLen : (y0+j+1)*rowLen]
			kv := k[j]
			a := acc[:len(row)]
			for i, p := range row {
				a[i] += int32(p) * kv
			}
		}
		dst := out.Pix[yy*rowLen : (yy+1)*rowLen]
		for i, v := range acc {
			dst[i] = clip8(v)
		}
	}
	return out
}
