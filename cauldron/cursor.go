package cauldron

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Cursor is a stream's exact position, stored in a training checkpoint as JSON. Restoring it
// into a stream opened with the same sources and options makes the next record the one that
// followed when it was taken.
type Cursor struct {
	Version int    `json:"version"`
	Step    uint64 `json:"step"` // records handed out by this rank so far
	// The options that fix the order; a mismatch on restore is an error, not a silent reshuffle.
	Seed          uint64         `json:"seed"`
	Rank          int            `json:"rank"`
	World         int            `json:"world"`
	Shuffle       bool           `json:"shuffle"`
	ShuffleWindow int            `json:"shuffle_window"`
	Epochs        int            `json:"epochs"`
	Sources       []SourceCursor `json:"sources"`
}

// SourceCursor is one source's position. Data fingerprints the source's files (names and row
// groups) so that a resume against changed data is caught.
type SourceCursor struct {
	Name   string  `json:"name"`
	Data   string  `json:"data"`
	Weight float64 `json:"weight"`
	SourcePos
}

const cursorVersion = 1

// Cursor returns the position after the last record returned by Next.
func (s *Stream) Cursor() Cursor {
	c := Cursor{Version: cursorVersion, Step: s.step, Seed: s.opts.Seed, Rank: s.opts.Rank, World: s.opts.World,
		Shuffle: s.opts.Shuffle, ShuffleWindow: s.opts.ShuffleWindow, Epochs: s.opts.Epochs,
		Sources: make([]SourceCursor, len(s.sources))}
	for i, src := range s.sources {
		c.Sources[i] = SourceCursor{Name: src.src.Name, Data: src.src.fingerprint, Weight: s.weights[i], SourcePos: src.pos}
	}
	return c
}

// Restore moves the stream to c. The stream must be fresh from Open with the same sources and
// options; the next Next rereads one window per source, lazily.
func (s *Stream) Restore(c Cursor) error {
	bad := func(what string, want, got any) error {
		return fmt.Errorf("cauldron: cursor does not fit this stream: %s is %v in the cursor, %v now", what, want, got)
	}
	o := s.opts
	switch {
	case c.Version != cursorVersion:
		return bad("version", c.Version, cursorVersion)
	case c.Seed != o.Seed:
		return bad("seed", c.Seed, o.Seed)
	case c.Rank != o.Rank:
		return bad("rank", c.Rank, o.Rank)
	case c.World != o.World:
		return bad("world size", c.World, o.World)
	case c.Shuffle != o.Shuffle:
		return bad("shuffle", c.Shuffle, o.Shuffle)
	case c.ShuffleWindow != o.ShuffleWindow:
		return bad("shuffle window", c.ShuffleWindow, o.ShuffleWindow)
	case c.Epochs != o.Epochs:
		return bad("epochs", c.Epochs, o.Epochs)
	case len(c.Sources) != len(s.sources):
		return bad("number of sources", len(c.Sources), len(s.sources))
	}
	for i, sc := range c.Sources {
		src := s.sources[i]
		switch {
		case sc.Name != src.src.Name:
			return bad(fmt.Sprintf("source %d", i), sc.Name, src.src.Name)
		case sc.Data != src.src.fingerprint:
			return bad(fmt.Sprintf("the data of source %q", sc.Name), sc.Data, src.src.fingerprint)
		case sc.Weight != s.weights[i]:
			return bad(fmt.Sprintf("the weight of source %q", sc.Name), sc.Weight, s.weights[i])
		}
	}
	for i, sc := range c.Sources {
		src := s.sources[i]
		src.pos, src.rows, src.have = sc.SourcePos, nil, false
	}
	s.step = c.Step
	return nil
}

// MarshalCursor and ParseCursor are the checkpoint's JSON form.
func MarshalCursor(c Cursor) ([]byte, error) { return json.MarshalIndent(c, "", " ") }

func ParseCursor(b []byte) (Cursor, error) {
	var c Cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("cauldron: bad cursor JSON: %w", err)
	}
	return c, nil
}

// clone copies c so that a snapshot handed to the consumer never aliases the stream's state.
func (c Cursor) clone() Cursor {
	c.Sources = slices.Clone(c.Sources)
	return c
}
