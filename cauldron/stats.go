package cauldron

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// Stats counts good and skipped records by reason for a run. It is shared by the stream and
// the pool and safe for concurrent use.
type Stats struct {
	// Logger receives one line per skipped record (the first LogLimit of each reason, so a
	// broken subset cannot flood the log; the counts stay exact). Nil means slog.Default().
	Logger   *slog.Logger
	LogLimit int

	mu      sync.Mutex
	good    int64
	skipped map[Reason]int64
}

// NewStats returns counters that log through logger (nil: slog.Default()).
func NewStats(logger *slog.Logger) *Stats {
	return &Stats{Logger: logger, LogLimit: 20, skipped: map[Reason]int64{}}
}

func (s *Stats) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Good counts one record handed on.
func (s *Stats) Good() {
	s.mu.Lock()
	s.good++
	s.mu.Unlock()
}

// Skipped counts n records (or one file, for ReasonTruncatedFile) lost to reason and logs
// where they were.
func (s *Stats) Skipped(reason Reason, n int64, ref Ref, err error) {
	s.mu.Lock()
	if s.skipped == nil {
		s.skipped = map[Reason]int64{}
	}
	before := s.skipped[reason]
	s.skipped[reason] += n
	limit := s.LogLimit
	s.mu.Unlock()
	if limit <= 0 || before < int64(limit) {
		attrs := []any{"reason", string(reason), "source", ref.Source, "file", ref.File, "row", ref.Row}
		if n != 1 {
			attrs = append(attrs, "count", n)
		}
		if err != nil {
			attrs = append(attrs, "err", err.Error())
		}
		s.logger().Warn("cauldron: skipping bad record", attrs...)
	}
}

// Counts returns the number of good records and a copy of the skip counts.
func (s *Stats) Counts() (good int64, skipped map[Reason]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	skipped = make(map[Reason]int64, len(s.skipped))
	for k, v := range s.skipped {
		skipped[k] = v
	}
	return s.good, skipped
}

// Summary is the run's one-line account of its data: "1200 good, 3 skipped (bad_image=2 null_field=1)".
func (s *Stats) Summary() string {
	good, skipped := s.Counts()
	var total int64
	keys := make([]string, 0, len(skipped))
	for k, v := range skipped {
		total += v
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, skipped[Reason(k)])
	}
	if total == 0 {
		return fmt.Sprintf("%d good, 0 skipped", good)
	}
	return fmt.Sprintf("%d good, %d skipped (%s)", good, total, strings.Join(parts, " "))
}

// LogSummary writes Summary to the logger, for the end of a run.
func (s *Stats) LogSummary() {
	s.logger().Info("cauldron: data summary", "summary", s.Summary())
}

// retract takes back a Good for a record that was dropped later, by the pool's processing.
func (s *Stats) retract() {
	s.mu.Lock()
	s.good--
	s.mu.Unlock()
}
