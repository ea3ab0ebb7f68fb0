package model_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/model"
)

// BenchmarkLoadPeakRSS writes a random ~100M-parameter Idefics2 checkpoint (f32, ~0.4 GB) and
// loads it in a fresh process, reporting the peak resident memory relative to the file size.
// Mapping the file and releasing each tensor's pages once converted keeps the peak at about one
// copy of the weights: go test -run '^$' -bench LoadPeakRSS ./model/
func BenchmarkLoadPeakRSS(b *testing.B) {
	dir := b.TempDir()
	c := model.Idefics2_8B()
	c.Vision.NumHiddenLayers, c.Vision.HiddenSize, c.Vision.IntermediateSize, c.Vision.NumAttentionHeads = 4, 384, 1536, 6
	c.Perceiver.Depth = 1
	c.Text.HiddenSize, c.Text.IntermediateSize, c.Text.NumHiddenLayers = 768, 2048, 8
	c.Text.NumAttentionHeads, c.Text.NumKeyValueHeads, c.Text.HeadDim = 12, 4, 64
	c.Perceiver.HiddenSize, c.Perceiver.NHeads, c.Perceiver.HeadDim, c.Perceiver.NumKeyValueHeads = 768, 8, 64, 2
	m := model.New(c, dtypes.Float32)
	m.RandomInit(1)
	if err := m.SaveHF(dir, dtypes.Float32); err != nil {
		b.Fatal(err)
	}
	_, total := c.ParamCounts()
	st, _ := os.Stat(filepath.Join(dir, "model.safetensors"))
	m = nil
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLoadChild$")
		cmd.Env = append(os.Environ(), "IDEFICS2_LOAD_CHILD="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		var base, peak float64
		fmt.Sscanf(lastLine(string(out), "rss"), "rss base %f peak %f", &base, &peak)
		b.ReportMetric(peak/1e6, "peakMB")
		b.ReportMetric((peak-base)/float64(st.Size()), "peak/file")
		b.Logf("%d params, file %.0f MB: process RSS %.0f MB before loading, peak %.0f MB (%.2f× the file)",
			total, float64(st.Size())/1e6, base/1e6, peak/1e6, (peak-base)/float64(st.Size()))
	}
}

// TestLoadChild is the child process of BenchmarkLoadPeakRSS; it does nothing in a normal run.
func TestLoadChild(t *testing.T) {
	dir := os.Getenv("IDEFICS2_LOAD_CHILD")
	if dir == "" {
		return
	}
	base := vmHWM()
	if _, err := model.Load(dir, dtypes.Float32); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("rss base %d peak %d\n", base, vmHWM())
}

func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func lastLine(s, prefix string) string {
	out := ""
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = l
		}
	}
	return out
}
