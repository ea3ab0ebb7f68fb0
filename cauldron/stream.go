package cauldron

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Options control how a Stream orders its samples. Everything that changes the order is
// written into the cursor, and a cursor only resumes a stream with the same options.
type Options struct {
	// Seed makes shuffling and mixing reproducible.
	Seed uint64
	// Rank and World shard the data for data-parallel training: rank r of World reads every
	// World-th row group of each epoch (every World-th row when a source has fewer row groups
	// than ranks), so ranks see disjoint samples. World 0 means 1.
	Rank, World int
	// Shuffle permutes row groups each epoch and rows within each window of ShuffleWindow row
	// groups. Off, a single source is read in file order (evaluation).
	Shuffle bool
	// ShuffleWindow is how many row groups are read and shuffled together: the shuffle buffer,
	// in row groups. It is also the memory bound: each source holds at most ShuffleWindow row
	// groups (fewer as they are handed out), plus one being read. The hub's Cauldron shards have
	// 100-row row groups of tens of MB, so a mixture of all 50 subsets with the default holds
	// a few GB; lower it for many sources. Zero means 2.
	ShuffleWindow int
	// Epochs stops each source after that many passes (the stream ends when all have stopped);
	// zero repeats forever, for training by steps.
	Epochs int
	// Validate, when set, checks each record before it is handed out, e.g. that its image
	// bytes decode (this package never decodes). An error skips the record: its SkipError
	// reason is used, or bad_image for a plain error.
	Validate func(*Record) error
	// Stats receives the counts; nil makes a fresh one (see Stream.Stats).
	Stats *Stats
	// Logger for skipped records and the summary; nil means slog.Default().
	Logger *slog.Logger
}

// Stream yields the records of a weighted mixture of sources, in an order fixed by the
// options, and can report and restore its exact position.
type Stream struct {
	opts    Options
	sources []*sourceStream
	weights []float64
	step    uint64
}

// Open opens every file of every source (reading only footers), checks their schemas, and
// returns a stream positioned at its start. A file with a foreign schema is an error; an
// unreadable (truncated) file is skipped and counted.
func Open(sources []Source, opts Options) (*Stream, error) {
	if len(sources) == 0 {
		return nil, errors.New("cauldron: no sources")
	}
	if opts.World <= 0 {
		opts.World = 1
	}
	if opts.Rank < 0 || opts.Rank >= opts.World {
		return nil, fmt.Errorf("cauldron: rank %d out of range for world size %d", opts.Rank, opts.World)
	}
	if opts.ShuffleWindow <= 0 {
		opts.ShuffleWindow = 2
	}
	if opts.Stats == nil {
		opts.Stats = NewStats(opts.Logger)
	}
	s := &Stream{opts: opts}
	names := map[string]bool{}
	for _, src := range sources {
		if names[src.Name] {
			return nil, fmt.Errorf("cauldron: two sources are named %q", src.Name)
		}
		names[src.Name] = true
		if src.Weight < 0 {
			return nil, fmt.Errorf("cauldron: source %q has negative weight %g", src.Name, src.Weight)
		}
		o, err := openSource(src, opts.Stats)
		if err != nil {
			return nil, err
		}
		w := src.Weight
		if w == 0 {
			w = 1
		}
		ss := newSourceStream(o, &s.opts)
		if ss.rankRows() == 0 {
			return nil, fmt.Errorf("cauldron: source %q has no rows for rank %d of %d (%d rows in all)", src.Name, opts.Rank, opts.World, o.Rows())
		}
		s.sources = append(s.sources, ss)
		s.weights = append(s.weights, w)
	}
	return s, nil
}

// Stats returns the stream's counters.
func (s *Stream) Stats() *Stats { return s.opts.Stats }

// Next returns the next good record; io.EOF when every source has run its epochs.
func (s *Stream) Next(ctx context.Context) (Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Record{}, err
		}
		src := s.pick()
		if src == nil {
			return Record{}, io.EOF
		}
		rec, err := s.fromSource(ctx, src)
		if err != nil {
			return Record{}, err
		}
		if rec == nil { // the source has just finished its epochs: draw again among the others
			continue
		}
		s.step++
		return *rec, nil
	}
}

// fromSource returns the source's next good record, skipping and counting bad ones; nil when
// it is exhausted.
func (s *Stream) fromSource(ctx context.Context, src *sourceStream) (*Record, error) {
	stats := s.opts.Stats
	badRun := 0
	for {
		r, ok, err := src.next(ctx)
		if err != nil || !ok {
			return nil, err
		}
		if r.err == nil && s.opts.Validate != nil {
			if verr := s.opts.Validate(&r.rec); verr != nil {
				if _, isSkip := AsSkip(verr); !isSkip {
					verr = Skip(ReasonBadImage, verr)
				}
				r.err = verr
			}
		}
		if r.err == nil {
			stats.Good()
			return &r.rec, nil
		}
		var ue *unitError
		switch {
		case errors.As(r.err, &ue):
			stats.Skipped(ReasonReadError, int64(ue.rows), r.rec.Ref, ue.err)
		default:
			reason, ok := AsSkip(r.err)
			if !ok {
				reason = ReasonReadError
			}
			stats.Skipped(reason, 1, r.rec.Ref, r.err)
		}
		// A source whose every row is bad would otherwise spin forever when epochs repeat.
		badRun++
		if int64(badRun) > src.src.Rows()+1 {
			return nil, fmt.Errorf("cauldron: source %q: a whole epoch of bad records; see the log", src.src.Name)
		}
	}
}

// pick draws the source of the next sample. The draw for step n depends only on (seed, n)
// and which sources are still active, both of which the cursor restores.
func (s *Stream) pick() *sourceStream {
	var total float64
	for i, src := range s.sources {
		if !src.exhausted() {
			total += s.weights[i]
		}
	}
	if total == 0 {
		return nil
	}
	u := newRNG(s.opts.Seed, 0x6d6978, s.step).float() * total
	var last *sourceStream
	for i, src := range s.sources {
		if src.exhausted() {
			continue
		}
		last = src
		if u < s.weights[i] {
			return src
		}
		u -= s.weights[i]
	}
	return last // rounding
}
