package train

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
)

// PlotLoss draws the training loss (blue) and eval loss (orange) per step into a PNG.
func PlotLoss(path string, curve []CurvePoint) error {
	const W, H, pad = 800, 400, 30
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	if len(curve) == 0 {
		return writePNG(path, img)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range curve {
		for _, v := range []float64{p.Loss, p.EvalLoss} {
			if v > 0 && !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi <= lo {
		hi = lo + 1
	}
	axis := color.RGBA{120, 120, 120, 255}
	line(img, pad, H-pad, W-pad, H-pad, axis)
	line(img, pad, pad, pad, H-pad, axis)
	n := len(curve)
	x := func(i int) int { return pad + (W-2*pad)*i/max(n-1, 1) }
	y := func(v float64) int { return H - pad - int(float64(H-2*pad)*(v-lo)/(hi-lo)) }
	var lastEval = -1
	for i := range curve {
		if i > 0 {
			line(img, x(i-1), y(curve[i-1].Loss), x(i), y(curve[i].Loss), color.RGBA{31, 119, 180, 255})
		}
		if curve[i].EvalLoss > 0 {
			if lastEval >= 0 {
				line(img, x(lastEval), y(curve[lastEval].EvalLoss), x(i), y(curve[i].EvalLoss), color.RGBA{255, 127, 14, 255})
			}
			lastEval = i
		}
	}
	return writePNG(path, img)
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for s := 0; s <= steps; s++ {
		img.SetRGBA(x0+(x1-x0)*s/steps, y0+(y1-y0)*s/steps, c)
	}
}

func abs(a int) int {
	if a < 0 {
		return -a
	}
	return a
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
