package cauldron

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The pool hands items back in stream order whatever the workers' timing, so a run does not
// depend on the number of workers; and an item's cursor resumes right after it.
func TestPoolOrderAndResume(t *testing.T) {
	o := Options{Seed: 21, Shuffle: true, ShuffleWindow: 2}
	want, _ := take(t, openT(t, cauldronFixtures(t), o), 120)
	jitter := func(_ context.Context, r *Record) (string, error) {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		return key(r.Ref), nil
	}
	for _, workers := range []int{1, 3, 8} {
		p := NewPool(context.Background(), openT(t, cauldronFixtures(t), o), jitter, PoolOptions{Workers: workers})
		var got []string
		var cur Cursor
		for i := 0; i < 60; i++ {
			it, err := p.Next()
			if err != nil {
				t.Fatal(err)
			}
			if it.Value != key(it.Ref) {
				t.Fatalf("value %s for ref %s", it.Value, key(it.Ref))
			}
			got = append(got, it.Value)
			cur = it.Cursor
		}
		p.Close()
		s := openT(t, cauldronFixtures(t), o)
		if err := s.Restore(cur); err != nil {
			t.Fatal(err)
		}
		p = NewPool(context.Background(), s, jitter, PoolOptions{Workers: workers})
		for i := 0; i < 60; i++ {
			it, err := p.Next()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, it.Value)
		}
		p.Close()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%d workers: order differs from the stream's", workers)
		}
		tp := p.Throughput()
		if tp.Records != 60 || tp.RecordsPerSec <= 0 || tp.ImageBytes <= 0 {
			t.Errorf("throughput %+v", tp)
		}
	}
}

func TestPoolStopsOnProcessingError(t *testing.T) {
	boom := errors.New("boom")
	n := 0
	p := NewPool(context.Background(), openT(t, cauldronFixtures(t), Options{}), func(_ context.Context, r *Record) (int, error) {
		if r.Row == 3 && r.Source == "tiny_shapes" {
			return 0, boom
		}
		return 1, nil
	}, PoolOptions{Workers: 2})
	defer p.Close()
	for {
		_, err := p.Next()
		if err == nil {
			n++
			continue
		}
		if !errors.Is(err, boom) {
			t.Fatalf("got %v after %d items", err, n)
		}
		break
	}
}

func TestPoolEOFAndClose(t *testing.T) {
	p := NewPool(context.Background(), openT(t, cauldronFixtures(t)[:1], Options{Epochs: 1}), decodeImages, PoolOptions{Workers: 2, Ahead: 3})
	n := 0
	for {
		_, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if _, err := p.Next(); err != io.EOF {
		t.Errorf("Next after EOF: %v", err)
	}
	p.Close()
	if n != 32 {
		t.Fatalf("%d items, want 32", n)
	}
	// Closing an endless pool mid-stream must not hang.
	p = NewPool(context.Background(), openT(t, cauldronFixtures(t), Options{}), decodeImages, PoolOptions{Workers: 2})
	p.Next()
	p.Close()
}

func TestPoolSurvivesAPanic(t *testing.T) {
	s := openT(t, cauldronFixtures(t)[:1], Options{Epochs: 1, Stats: quietStats()})
	p := NewPool(context.Background(), s, func(_ context.Context, r *Record) (int, error) {
		if r.Row == 5 {
			panic("decoder bug")
		}
		return 1, nil
	}, PoolOptions{Workers: 2})
	defer p.Close()
	n := 0
	for {
		_, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	_, skipped := s.Stats().Counts()
	if n != 31 || skipped[ReasonPanic] != 1 {
		t.Fatalf("%d items, skipped %v", n, skipped)
	}
}
