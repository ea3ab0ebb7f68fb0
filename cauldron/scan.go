package cauldron

import (
	"context"
	"errors"
)

// Scan visits every row of a source in file order, good or bad: fn gets the record and, for a
// bad row, the SkipError that a stream would have counted (a whole unreadable row group comes
// as one call with ReasonReadError). It is for checking a dataset before a long run and for
// tests; training and evaluation read through a Stream. A truncated file is reported through
// stats, as in a stream.
func Scan(ctx context.Context, src Source, stats *Stats, fn func(rec *Record, bad error) error) error {
	if stats == nil {
		stats = NewStats(nil)
	}
	o, err := openSource(src, stats)
	if err != nil {
		return err
	}
	for _, u := range o.units {
		ref := Ref{Source: src.Name, File: o.paths[u.file], Row: u.firstRow}
		rows, err := o.files[u.file].readUnit(ctx, u.group, ref)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if ferr := fn(&Record{Ref: ref}, Skip(ReasonReadError, err)); ferr != nil {
				return ferr
			}
			continue
		}
		for i := range rows {
			bad := rows[i].err
			var ue *unitError
			if errors.As(bad, &ue) {
				bad = Skip(ReasonReadError, ue.err)
			}
			if err := fn(&rows[i].rec, bad); err != nil {
				return err
			}
		}
	}
	return nil
}
