package train

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	trainColor = color.RGBA{31, 119, 180, 255} // matplotlib's first two colours, as HF's plots
	evalColor  = color.RGBA{255, 127, 14, 255}
)

// PlotLoss draws loss.png: the training loss per optimizer step and the eval loss where it was
// measured, with the learning rate of each step (lr) in a second panel on the same step axis;
// title names the run.
func PlotLoss(path, title string, curve []CurvePoint, lr func(step int) float64) error {
	var trainXY, evalXY, lrXY plotter.XYs
	for _, p := range curve {
		x := float64(p.Step)
		trainXY = append(trainXY, plotter.XY{X: x, Y: p.Loss})
		if p.EvalLoss > 0 {
			evalXY = append(evalXY, plotter.XY{X: x, Y: p.EvalLoss})
		}
		lrXY = append(lrXY, plotter.XY{X: x, Y: lr(p.Step)})
	}
	if len(curve) == 0 {
		return fmt.Errorf("loss curve is empty")
	}

	lossPlot := plot.New()
	lossPlot.Title.Text = title
	lossPlot.Y.Label.Text = "loss"
	lossPlot.X.Label.Text = "optimizer step"
	lossPlot.Add(plotter.NewGrid())
	trainLine, err := plotter.NewLine(trainXY)
	if err != nil {
		return err
	}
	trainLine.Color, trainLine.Width = trainColor, vg.Points(1.5)
	lossPlot.Add(trainLine)
	lossPlot.Legend.Add("train loss", trainLine)
	if len(evalXY) > 0 {
		evalLine, evalPoints, err := plotter.NewLinePoints(evalXY)
		if err != nil {
			return err
		}
		evalLine.Color, evalLine.Width = evalColor, vg.Points(1.5)
		evalPoints.Color, evalPoints.Shape = evalColor, draw.CircleGlyph{}
		lossPlot.Add(evalLine, evalPoints)
		lossPlot.Legend.Add("eval loss", evalLine, evalPoints)
	}
	lossPlot.Legend.Top = true
	lossPlot.Y.Min = 0

	lrPlot := plot.New()
	lrPlot.Y.Label.Text = "learning rate"
	lrPlot.X.Label.Text = "optimizer step"
	lrPlot.Add(plotter.NewGrid())
	lrLine, err := plotter.NewLine(lrXY)
	if err != nil {
		return err
	}
	lrLine.Color, lrLine.Width = color.Gray{Y: 60}, vg.Points(1.5)
	lrPlot.Add(lrLine)
	lrPlot.Y.Min = 0
	lrPlot.Y.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick { // 1e-04, not 0.0001
		ticks := plot.DefaultTicks{}.Ticks(lo, hi)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = fmt.Sprintf("%.3g", ticks[i].Value)
			}
		}
		return ticks
	})
	for _, p := range []*plot.Plot{lossPlot, lrPlot} {
		p.X.Min, p.X.Max = trainXY[0].X, trainXY[len(trainXY)-1].X
		p.X.Tick.Marker = plot.TickerFunc(stepTicks)
	}

	img := vgimg.New(10*vg.Inch, 7*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(12), PadY: vg.Points(12)}
	canvases := plot.Align([][]*plot.Plot{{lossPlot}, {lrPlot}}, tiles, dc)
	lossPlot.Draw(canvases[0][0])
	lrPlot.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// stepTicks labels whole steps at a round interval (1, 2 or 5 × 10ⁿ) giving 5 to 10 labels, with
// unlabelled ticks between them: gonum's default labels a 1–40 run at 5, 20 and 35 only.
func stepTicks(lo, hi float64) []plot.Tick {
	step := niceStep(hi - lo)
	minor := step / 5
	if minor < 1 {
		minor = step
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/minor) * minor; v <= hi; v += minor {
		t := plot.Tick{Value: v}
		if math.Mod(v, step) == 0 {
			t.Label = strconv.FormatFloat(v, 'f', -1, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// niceStep is the smallest 1, 2 or 5 × 10ⁿ that cuts span into at most 10 parts.
func niceStep(span float64) float64 {
	for mag := 1.0; ; mag *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if span/(m*mag) <= 10 {
				return m * mag
			}
		}
	}
}

// runTitle names the run on its plot: output directory, config file and the settings that shape
// the curves.
func runTitle(cfg Config) string {
	src := cfg.Source
	if src == "" {
		src = "built-in defaults"
	}
	adapter := "no LoRA"
	if cfg.LoRA.R > 0 {
		adapter = fmt.Sprintf("LoRA r %d α %g", cfg.LoRA.R, cfg.LoRA.Alpha)
		if cfg.LoRA.UseDoRA {
			adapter = "Do" + adapter
		}
	}
	return fmt.Sprintf("%s (config %s)\n%s, lr %g %s, warmup %d, batch %d×%d, %s, %s",
		cfg.Train.OutputDir, src, adapter, cfg.Train.LR, cfg.Train.Scheduler, cfg.Train.WarmupSteps,
		cfg.Train.BatchSize, cfg.Train.GradAccum, cfg.Model.DType, cfg.Model.Path)
}
