package train

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loss.png is a readable chart: a PNG of the set size, and the step axis is labelled at round
// steps.
func TestPlotLoss(t *testing.T) {
	var curve []CurvePoint
	for s := 1; s <= 40; s++ {
		p := CurvePoint{Step: s, Loss: 20 / float64(s)}
		if s%20 == 0 {
			p.EvalLoss = 1.5
		}
		curve = append(curve, p)
	}
	cfg := Defaults()
	cfg.Source, cfg.Model.Path = "configs/tiny.yaml", "runs/tiny-model"
	path := filepath.Join(t.TempDir(), "loss.png")
	if err := PlotLoss(path, runTitle(cfg), curve, func(s int) float64 { return 1e-4 * float64(s) / 40 }); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 900 || b.Dy() < 600 {
		t.Errorf("loss.png is %v", b)
	}
	var labels []string
	for _, tk := range stepTicks(1, 40) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "5 10 15 20 25 30 35 40" {
		t.Errorf("step labels %q", got)
	}
	if title := runTitle(cfg); !strings.Contains(title, "runs/sft (config configs/tiny.yaml)") {
		t.Errorf("title %q", title)
	}
	if err := PlotLoss(path, "", nil, nil); err == nil {
		t.Error("an empty curve was plotted")
	}
}
