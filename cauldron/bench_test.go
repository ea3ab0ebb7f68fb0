package cauldron

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/draw"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// BenchmarkPipeline measures records/s on Cauldron-layout shards, and the same work in Python
// (pyarrow + Pillow, scripts/bench_cauldron.py) on the same files in the same run, reporting
// the ratio: "read" is this package's own work (rows to records); "decode" adds decoding
// every image and converting it to RGB with N workers. The decode here uses Go's standard
// library decoders, which are slower than Pillow's C ones; the data package's decoder
// (libjpeg) is what a real run plugs in.
//
//	.venv/bin/python scripts/make_datasets.py --bench /tmp/cauldron-bench
//	CAULDRON_BENCH_DIR=/tmp/cauldron-bench/bench go test -run '^$' -bench Pipeline -benchtime 3x ./cauldron
//
// Without CAULDRON_BENCH_DIR it runs on the committed fixtures (tiny images) and skips Python.
func BenchmarkPipeline(b *testing.B) {
	dir := os.Getenv("CAULDRON_BENCH_DIR")
	fixtures := dir == ""
	if fixtures {
		dir = filepath.Join(fixtureRoot, "the_cauldron")
	}
	files, err := Files(dir)
	if err != nil {
		b.Fatal(err)
	}
	src := Source{Name: "bench", Files: files, Layout: Cauldron}
	py := pythonRates(b, dir, fixtures)
	b.Run("read", func(b *testing.B) {
		var n int64
		for range b.N {
			s, err := Open([]Source{src}, Options{Epochs: 1})
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := s.Next(context.Background()); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		report(b, n, py["read"])
	})
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("decode/workers=%d", workers), func(b *testing.B) {
			var n int64
			for range b.N {
				s, err := Open([]Source{src}, Options{Epochs: 1, Stats: NewStats(slog.New(slog.NewTextHandler(io.Discard, nil)))})
				if err != nil {
					b.Fatal(err)
				}
				p := NewPool(context.Background(), s, decodeRGB, PoolOptions{Workers: workers})
				for {
					_, err := p.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				p.Close()
			}
			report(b, n, py["decode"])
		})
	}
}

func report(b *testing.B, n int64, py float64) {
	rate := float64(n) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "records/s")
	if py > 0 {
		b.ReportMetric(py, "python_records/s")
		b.ReportMetric(rate/py, "x_python")
	}
}

// decodeRGB decodes and converts to RGB(A) pixels, Pillow's open + convert("RGB").
func decodeRGB(ctx context.Context, r *Record) ([]*image.RGBA, error) {
	ims, err := decodeImages(ctx, r)
	if err != nil {
		return nil, err
	}
	out := make([]*image.RGBA, len(ims))
	for i, m := range ims {
		rgba := image.NewRGBA(m.Bounds())
		draw.Draw(rgba, rgba.Bounds(), m, m.Bounds().Min, draw.Src)
		out[i] = rgba
	}
	return out, nil
}

var pyOnce sync.Once
var pyRate = map[string]float64{}

// pythonRates runs the Python counterpart once per process (one process, as HF scripts read
// without a DataLoader's workers) and returns records/s by pass; empty when it cannot run.
func pythonRates(b *testing.B, dir string, fixtures bool) map[string]float64 {
	pyOnce.Do(func() {
		python := filepath.Join("..", ".venv", "bin", "python")
		if fixtures {
			return
		}
		if _, err := os.Stat(python); err != nil {
			b.Logf("no %s: Python side skipped", python)
			return
		}
		out, err := exec.Command(python, filepath.Join("..", "scripts", "bench_cauldron.py"), dir).Output()
		if err != nil {
			b.Logf("python benchmark: %v", err)
			return
		}
		var res map[string]struct {
			RecordsPerSec float64 `json:"records_per_sec"`
		}
		if json.Unmarshal(out, &res) == nil {
			for k, v := range res {
				pyRate[k] = v.RecordsPerSec
			}
			b.Logf("python (pyarrow + Pillow, 1 process): %s", out)
		}
	})
	return pyRate
}
