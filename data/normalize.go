package data

// Rescale and normalize, as HF's PIL image processor computes them: rescale multiplies the
// uint8 value by rescale_factor in float64 and casts to float32; normalize then subtracts the
// float32 mean and divides by the float32 std, in float32. Each channel therefore maps its
// 256 possible input values to 256 fixed floats, so a lookup table reproduces the arithmetic
// exactly and costs one load per value.

// PixelLUT maps a uint8 channel value to the model's float32 input, per channel.
type PixelLUT [3][256]float32

// NewPixelLUT builds the table for a configuration. The float32() conversions are the
// roundings numpy performs; they also keep the compiler from fusing operations.
func NewPixelLUT(c ImageProcessorConfig) *PixelLUT {
	var t PixelLUT
	for ch := 0; ch < 3; ch++ {
		for u := 0; u < 256; u++ {
			v := float32(u)
			if c.DoRescale {
				v = float32(float64(u) * c.RescaleFactor)
			}
			if c.DoNormalize {
				mean, std := float32(c.ImageMean[ch]), float32(c.ImageStd[ch])
				v = float32(float32(v-mean) / std)
			}
			t[ch][u] = v
		}
	}
	return &t
}

// writeCHW writes img into dst, a channels-first tensor of 3×H×W (H, W ≥ the image's),
// through the table, and zeroes the padding at the bottom and right (HF pads with 0.0 after
// normalizing).
func (t *PixelLUT) writeCHW(dst []float32, img *Image, H, W int) {
	plane := H * W
	r, g, b := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	lutRows(t, r, g, b, W, img)
	for y := 0; y < img.H; y++ {
		o := y * W
		if img.W < W {
			clear(r[o+img.W : o+W])
			clear(g[o+img.W : o+W])
			clear(b[o+img.W : o+W])
		}
	}
	clear(r[img.H*W:])
	clear(g[img.H*W:])
	clear(b[img.H*W:])
}

// lutRows writes the image's pixels through the table into three planes of row stride W.
func lutRows(t *PixelLUT, r, g, b []float32, W int, img *Image) {
	lr, lg, lb := &t[0], &t[1], &t[2]
	for y := 0; y < img.H; y++ {
		src := img.Pix[y*img.W*3 : (y+1)*img.W*3]
		o := y * W
		rr, gg, bb := r[o:o+img.W], g[o:o+img.W], b[o:o+img.W]
		gg, bb = gg[:len(rr)], bb[:len(rr)]
		for x, i := 0, 0; x < len(rr) && i+2 < len(src); x, i = x+1, i+3 {
			rr[x], gg[x], bb[x] = lr[src[i]], lg[src[i+1]], lb[src[i+2]]
		}
	}
}
