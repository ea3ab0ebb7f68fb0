package data

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user+system CPU time. On a shared machine it measures the work
// itself, where wall time also counts the neighbours; both are reported.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportRates(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "images/cpu-s")
}

// BenchmarkImageProcessor measures input images per second through the image side of the
// processor — split, resize, rescale, normalize and pad into the batch tensor — from decoded
// RGB, the same work HF's Idefics2ImageProcessorPil does on a PIL image.
// scripts/bench_processor.py runs HF on the same images and prints the ratio.
//
//	go test ./data -run '^$' -bench ImageProcessor -benchtime 20x -cpu 1
var benchImages = []string{
	"testdata/pillow/decode/hubble_deep_field.jpg",                  // 1000x872 photo -> 980x854
	"testdata/fixtures/processor-docpage-split-train/page_text.png", // 1240x1754 page -> 692x980
}

func BenchmarkImageProcessor(b *testing.B) {
	root := repoRoot(b)
	tok := loadTestTokenizer(b, CompatTrained)
	for _, split := range []bool{false, true} {
		cfg := DefaultImageProcessorConfig()
		cfg.DoImageSplitting = split
		p, err := NewProcessor(tok, cfg)
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range benchImages {
			raw, err := os.ReadFile(filepath.Join(root, path))
			if err != nil {
				b.Fatal(err)
			}
			img, err := DecodeImage(raw)
			if err != nil {
				b.Fatal(err)
			}
			name := filepath.Base(path) + map[bool]string{false: "/split=off", true: "/split=on"}[split]
			b.Run(name, func(b *testing.B) {
				var bt *Batch // reused across batches, as a training loop would
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					s := &Sample{Images: cfg.ProcessImage(img)}
					if bt, err = p.CollateInto(bt, []*Sample{s}, CollateOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				reportRates(b, cpu0)
			})
			b.Run(filepath.Base(path)+"/decode", func(b *testing.B) {
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					if _, err := DecodeImage(raw); err != nil {
						b.Fatal(err)
					}
				}
				reportRates(b, cpu0)
			})
		}
	}
}
