package cauldron

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func cauldronFixtures(t testing.TB, weights ...float64) []Source {
	t.Helper()
	srcs, err := CauldronSources(filepath.Join(fixtureRoot, "the_cauldron"), "tiny_shapes", "docvqa", "nlvr2")
	if err != nil {
		t.Fatal(err)
	}
	for i := range srcs {
		if i < len(weights) {
			srcs[i].Weight = weights[i]
		}
	}
	return srcs
}

func openT(t testing.TB, srcs []Source, o Options) *Stream {
	t.Helper()
	s, err := Open(srcs, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func key(r Ref) string { return fmt.Sprintf("%s/%s#%d", r.Source, filepath.Base(r.File), r.Row) }

// take reads n records (or up to EOF) and returns their keys and the cursor after each.
func take(t testing.TB, s *Stream, n int) ([]string, []Cursor) {
	t.Helper()
	var keys []string
	var curs []Cursor
	for i := 0; i < n; i++ {
		r, err := s.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key(r.Ref))
		curs = append(curs, s.Cursor().clone())
	}
	return keys, curs
}

func TestEpochVisitsEveryRowOnceShuffled(t *testing.T) {
	srcs := cauldronFixtures(t)[:1] // tiny_shapes: 32 rows in 4 row groups
	s := openT(t, srcs, Options{Seed: 7, Shuffle: true, ShuffleWindow: 2, Epochs: 2})
	keys, _ := take(t, s, 1000)
	if len(keys) != 64 {
		t.Fatalf("%d records over 2 epochs, want 64", len(keys))
	}
	for e := 0; e < 2; e++ {
		seen := map[string]bool{}
		for _, k := range keys[e*32 : (e+1)*32] {
			if seen[k] {
				t.Fatalf("epoch %d repeats %s", e, k)
			}
			seen[k] = true
		}
	}
	if strings.Join(keys[:32], ",") == strings.Join(keys[32:], ",") {
		t.Error("both epochs have the same order")
	}
	inOrder := true
	for i := 1; i < 32; i++ {
		inOrder = inOrder && keys[i] > keys[i-1]
	}
	if inOrder {
		t.Error("shuffle kept file order")
	}
	// Without shuffle, a source is read in file order (evaluation).
	plain, _ := take(t, openT(t, srcs, Options{Epochs: 1}), 100)
	for i, k := range plain {
		if want := fmt.Sprintf("tiny_shapes/%s#%d", filepath.Base(srcs[0].Files[0]), i); k != want {
			t.Fatalf("record %d is %s, want %s", i, k, want)
		}
	}
}

func TestSameSeedSameSequence(t *testing.T) {
	o := Options{Seed: 3, Shuffle: true, ShuffleWindow: 2}
	a, _ := take(t, openT(t, cauldronFixtures(t), o), 300)
	b, _ := take(t, openT(t, cauldronFixtures(t), o), 300)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatal("same seed, different sequences")
	}
	o.Seed = 4
	c, _ := take(t, openT(t, cauldronFixtures(t), o), 300)
	if strings.Join(a, ",") == strings.Join(c, ",") {
		t.Fatal("different seeds, same sequence")
	}
}

// Ranks must see disjoint samples that together are the whole epoch, both when a source has
// enough row groups to split (tiny_shapes: 4) and when it has fewer than ranks (docvqa: 2).
func TestShardingByRank(t *testing.T) {
	srcs := cauldronFixtures(t)
	for _, tc := range []struct {
		src   Source
		world int
	}{{srcs[0], 2}, {srcs[0], 3}, {srcs[1], 3}, {srcs[2], 4}} {
		all := map[string]int{}
		total := 0
		for rank := 0; rank < tc.world; rank++ {
			keys, _ := take(t, openT(t, []Source{tc.src}, Options{Seed: 1, Shuffle: true, Rank: rank, World: tc.world, Epochs: 1}), 1000)
			for _, k := range keys {
				all[k]++
			}
			total += len(keys)
		}
		var rows int
		Scan(context.Background(), tc.src, nil, func(*Record, error) error { rows++; return nil })
		if len(all) != rows || total != rows {
			t.Errorf("%s world %d: %d distinct of %d read, want %d", tc.src.Name, tc.world, len(all), total, rows)
		}
	}
}

// A stream restored from any cursor continues with exactly the records the original stream
// produced next, across window, epoch and source boundaries.
func TestResumeContinuesIdentically(t *testing.T) {
	o := Options{Seed: 11, Shuffle: true, ShuffleWindow: 2}
	want, curs := take(t, openT(t, cauldronFixtures(t, 3, 2, 1), o), 400)
	for _, k := range []int{0, 1, 7, 31, 32, 33, 100, 257, 350} {
		b, err := MarshalCursor(curs[k])
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseCursor(b)
		if err != nil {
			t.Fatal(err)
		}
		s := openT(t, cauldronFixtures(t, 3, 2, 1), o)
		if err := s.Restore(c); err != nil {
			t.Fatal(err)
		}
		got, _ := take(t, s, 40)
		if n := min(len(want)-(k+1), 40); strings.Join(got[:n], ",") != strings.Join(want[k+1:k+1+n], ",") {
			t.Fatalf("after record %d: resumed with %v, want %v", k, got[:5], want[k+1:k+6])
		}
	}
	// Finite epochs: resuming near the end still ends at the same place.
	o.Epochs = 1
	want, curs = take(t, openT(t, cauldronFixtures(t, 3, 2, 1), o), 1000)
	if len(want) != 48 {
		t.Fatalf("one epoch of the mixture has %d records, want 48", len(want))
	}
	s := openT(t, cauldronFixtures(t, 3, 2, 1), o)
	if err := s.Restore(curs[44]); err != nil {
		t.Fatal(err)
	}
	got, _ := take(t, s, 100)
	if strings.Join(got, ",") != strings.Join(want[45:], ",") {
		t.Fatalf("tail %v, want %v", got, want[45:])
	}
}

func TestCursorRejectsOtherStreams(t *testing.T) {
	o := Options{Seed: 1, Shuffle: true}
	_, curs := take(t, openT(t, cauldronFixtures(t), o), 5)
	for what, o2 := range map[string]Options{
		"seed":       {Seed: 2, Shuffle: true},
		"world size": {Seed: 1, Shuffle: true, World: 2},
		"shuffle":    {Seed: 1},
	} {
		err := openT(t, cauldronFixtures(t), o2).Restore(curs[4])
		if err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("%s changed: %v", what, err)
		}
	}
	if err := openT(t, cauldronFixtures(t, 1, 2), o).Restore(curs[4]); err == nil || !strings.Contains(err.Error(), "weight") {
		t.Errorf("weight changed: %v", err)
	}
	if err := openT(t, cauldronFixtures(t)[:2], o).Restore(curs[4]); err == nil {
		t.Error("a source removed must be an error")
	}
}

// Each source's share of the samples is its weight's share, within 5 standard deviations
// of the binomial count.
func TestMixtureProportions(t *testing.T) {
	weights := []float64{5, 3, 2}
	s := openT(t, cauldronFixtures(t, weights...), Options{Seed: 5, Shuffle: true})
	const n = 20000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		r, err := s.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		counts[r.Source]++
	}
	for i, name := range []string{"tiny_shapes", "docvqa", "nlvr2"} {
		p := weights[i] / 10
		mean, sd := n*p, math.Sqrt(n*p*(1-p))
		if d := math.Abs(float64(counts[name]) - mean); d > 5*sd {
			t.Errorf("%s: %d of %d, want %.0f ± %.0f", name, counts[name], n, mean, 5*sd)
		}
	}
	t.Logf("counts %v", counts)
}

func TestOpenErrors(t *testing.T) {
	srcs := cauldronFixtures(t)
	if _, err := Open(srcs, Options{Rank: 2, World: 2}); err == nil {
		t.Error("rank out of range accepted")
	}
	dup := []Source{srcs[0], srcs[0]}
	if _, err := Open(dup, Options{}); err == nil {
		t.Error("duplicate source names accepted")
	}
	if _, err := Open([]Source{{Name: "x", Files: []string{"/nonexistent.parquet"}, Layout: Cauldron}}, Options{}); err == nil || errors.Is(err, errUnreadable) {
		t.Errorf("missing file: %v", err)
	}
}

func quietStats() *Stats { return NewStats(slog.New(slog.NewTextHandler(io.Discard, nil))) }

func TestRankWithoutRowsIsAnError(t *testing.T) {
	// docvqa has 2 files of 5 rows: 4 ranks still each get rows (strided), 20 ranks cannot.
	src := cauldronFixtures(t)[1]
	if _, err := Open([]Source{src}, Options{Rank: 3, World: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open([]Source{src}, Options{Rank: 15, World: 20}); err == nil || !strings.Contains(err.Error(), "no rows for rank 15") {
		t.Fatalf("got %v", err)
	}
}
