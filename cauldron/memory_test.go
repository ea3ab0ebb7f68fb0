package cauldron

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// A shard many times the memory bound streams within it: the live heap stays near a few row
// groups (the shuffle window plus the one being decoded), whatever the file size. Measured,
// not assumed: the peak heap is sampled after every record, and the process's peak RSS is
// read from /proc after resetting it.
func TestLargeShardStreamsInBoundedMemory(t *testing.T) {
	const groupRows, imageBytes = 8, 64 << 10 // 512 KiB row groups
	rows := 2048                              // 128 MiB: 25 times the bound
	if testing.Short() {
		rows = 512
	}
	path := filepath.Join(t.TempDir(), "train-00000-of-00001-large.parquet")
	size := writeShard(t, path, rows, groupRows, imageBytes)
	groupBytes := int64(groupRows * imageBytes)

	const window = 2
	s, err := Open([]Source{{Name: "large", Files: []string{path}, Layout: Cauldron}},
		Options{Seed: 1, Shuffle: true, ShuffleWindow: window, Epochs: 1, Stats: NewStats(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	// A low GC percent keeps uncollected garbage out of the measurement, so the heap peak
	// shows what the reader holds, not how lazily the collector runs on a small heap.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	debug.FreeOSMemory() // so that the RSS peak starts from what is in use now
	resetPeakRSS()
	rssBase := peakRSS()

	var peak uint64
	n := 0
	for {
		r, err := s.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Images) != 1 || len(r.Images[0].Bytes) != imageBytes {
			t.Fatalf("row %d: bad record", r.Row)
		}
		n++
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	}
	if n != rows {
		t.Fatalf("read %d rows, want %d", n, rows)
	}
	grew := int64(peak - base)
	rss := peakRSS() - rssBase
	// The window (2 row groups of records) + one row group being read (the compressed column
	// chunk, Arrow's buffers as they grow, our copy): about 6 row groups, whatever the file
	// size; 10 leaves room for the collector.
	bound := 10 * groupBytes
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	t.Logf("file %.0f MiB, row group %.1f MiB, window %d: peak heap growth %.1f MiB (bound %.1f MiB), peak RSS growth %.1f MiB",
		mib(size), mib(groupBytes), window, mib(grew), mib(bound), mib(rss))
	if grew > bound {
		t.Errorf("heap grew %.1f MiB reading a %.0f MiB file, bound %.1f MiB", mib(grew), mib(size), mib(bound))
	}
	if !testing.Short() && grew > size/10 {
		t.Errorf("heap grew %d MiB, a tenth of the file", grew>>20)
	}
	debug.FreeOSMemory()
}

// resetPeakRSS makes /proc/self/status's VmHWM restart from the current RSS (Linux).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns VmHWM in bytes, or 0 where /proc is not there.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
