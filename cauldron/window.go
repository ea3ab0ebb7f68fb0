package cauldron

import (
	"context"
)

// sourceStream walks one source epoch after epoch with a windowed shuffle.
//
// Why a window and not a sliding shuffle buffer: a sliding buffer's state is its contents,
// which a checkpoint cannot store cheaply, and replaying it means rereading everything. Here
// each epoch permutes the source's row groups (seeded by epoch), each rank takes every
// world-th of them, and the rows of `window` consecutive row groups are permuted together
// (seeded by epoch and window). Every window's order is a pure function of (seed, epoch,
// window), so the position is three integers and resuming rereads one window. Memory holds one
// window: at most `window` row groups, whatever the shard sizes.
type sourceStream struct {
	src  *openedSource
	key  uint64
	cfg  *Options
	pos  SourcePos
	rows []row // the current window, in emission order; consumed entries are cleared
	have bool  // rows holds window pos.Window of epoch pos.Epoch

	epochUnits []int // units this rank reads in epoch unitsEpoch
	unitsEpoch int
	strided    bool // fewer units than ranks: every rank reads all units, keeps every world-th row
}

// SourcePos is a source's place in its stream.
type SourcePos struct {
	Epoch  int `json:"epoch"`
	Window int `json:"window"`
	Offset int `json:"offset"` // rows of the window already passed, bad ones included
}

func newSourceStream(src *openedSource, cfg *Options) *sourceStream {
	return &sourceStream{src: src, key: nameKey(src.Name), cfg: cfg, unitsEpoch: -1,
		strided: len(src.units) < cfg.World}
}

// rankRows counts the rows this rank gets in an epoch (the same every epoch).
func (s *sourceStream) rankRows() int64 {
	var n int64
	w, r := s.cfg.World, s.cfg.Rank
	for _, ui := range s.units(0) {
		u := s.src.units[ui]
		if !s.strided {
			n += int64(u.rows)
			continue
		}
		// rows k of the unit with (firstRow+k+file) % w == r
		first := (int64(r) - (u.firstRow+int64(u.file))%int64(w) + int64(w)) % int64(w)
		if first < int64(u.rows) {
			n += (int64(u.rows)-first-1)/int64(w) + 1
		}
	}
	return n
}

// units returns the row groups this rank reads in an epoch, in reading order.
func (s *sourceStream) units(epoch int) []int {
	if s.unitsEpoch == epoch {
		return s.epochUnits
	}
	n := len(s.src.units)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if s.cfg.Shuffle {
		order = newRNG(s.cfg.Seed, s.key, uint64(epoch)).perm(n)
	}
	if !s.strided && s.cfg.World > 1 {
		mine := make([]int, 0, n/s.cfg.World+1)
		for i := s.cfg.Rank; i < n; i += s.cfg.World {
			mine = append(mine, order[i])
		}
		order = mine
	}
	s.epochUnits, s.unitsEpoch = order, epoch
	return order
}

func (s *sourceStream) windows(epoch int) int {
	k := s.cfg.ShuffleWindow
	return (len(s.units(epoch)) + k - 1) / k
}

// exhausted reports whether the source has run its epochs.
func (s *sourceStream) exhausted() bool {
	return s.cfg.Epochs > 0 && s.pos.Epoch >= s.cfg.Epochs
}

// next returns the next row, good or bad, and false when the source has run its epochs.
func (s *sourceStream) next(ctx context.Context) (row, bool, error) {
	for {
		if s.exhausted() {
			return row{}, false, nil
		}
		if !s.have {
			if err := s.load(ctx); err != nil {
				return row{}, false, err
			}
		}
		if s.pos.Offset < len(s.rows) {
			r := s.rows[s.pos.Offset]
			s.rows[s.pos.Offset] = row{} // let the image bytes go as soon as they are handed on
			s.pos.Offset++
			return r, true, nil
		}
		s.rows, s.have = nil, false
		s.pos.Offset = 0
		s.pos.Window++
		if s.pos.Window >= s.windows(s.pos.Epoch) {
			s.pos.Window = 0
			s.pos.Epoch++
		}
	}
}

// load reads the current window's row groups and orders their rows.
func (s *sourceStream) load(ctx context.Context) error {
	us := s.units(s.pos.Epoch)
	k := s.cfg.ShuffleWindow
	lo := s.pos.Window * k
	hi := min(lo+k, len(us))
	var rows []row
	for _, ui := range us[lo:hi] {
		u := s.src.units[ui]
		ref := Ref{Source: s.src.Name, File: s.src.paths[u.file], Row: u.firstRow}
		got, err := s.src.files[u.file].readUnit(ctx, u.group, ref)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			// One placeholder stands for the lost row group, counted as its row count.
			got = []row{{rec: Record{Ref: ref}, err: &unitError{rows: u.rows, err: err}}}
		}
		if s.strided {
			kept := got[:0]
			for _, r := range got {
				if _, lost := r.err.(*unitError); lost || int(r.rec.Row+int64(u.file))%s.cfg.World == s.cfg.Rank {
					kept = append(kept, r)
				}
			}
			got = kept
		}
		rows = append(rows, got...)
	}
	if s.cfg.Shuffle {
		p := newRNG(s.cfg.Seed, s.key, uint64(s.pos.Epoch), uint64(s.pos.Window)+1<<32).perm(len(rows))
		shuffled := make([]row, len(rows))
		for i, j := range p {
			shuffled[i] = rows[j]
		}
		rows = shuffled
	}
	s.rows, s.have = rows, true
	return nil
}

// unitError is a row group that could not be read.
type unitError struct {
	rows int
	err  error
}

func (e *unitError) Error() string { return "row group unreadable: " + e.err.Error() }
func (e *unitError) Unwrap() error { return e.err }
