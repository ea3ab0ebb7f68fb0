package cauldron

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Source is one dataset in a mixture: its files, how to read them, and its mixing weight.
type Source struct {
	Name   string
	Files  []string
	Layout Layout
	// Weight is the source's share of the samples in a mixture (normalised over the sources
	// still active); zero counts as 1.
	Weight float64
}

// Files expands paths, directories and glob patterns into a sorted list of data files
// (.parquet and .jsonl). A pattern that matches nothing is an error: a typo in a config must
// not silently train on less data.
func Files(patterns ...string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, pat := range patterns {
		if st, err := os.Stat(pat); err == nil && st.IsDir() {
			n := len(out)
			err := filepath.WalkDir(pat, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && isDataFile(p) {
					add(p)
				}
				return err
			})
			if err != nil {
				return nil, err
			}
			if len(out) == n {
				return nil, fmt.Errorf("no .parquet or .jsonl files under %s", pat)
			}
			continue
		}
		m, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", pat, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("no files match %s", pat)
		}
		for _, p := range m {
			add(p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func isDataFile(p string) bool {
	return strings.HasSuffix(p, ".parquet") || strings.HasSuffix(p, ".jsonl")
}

// CauldronSources finds subsets of The Cauldron in the hub's layout on disk
// (<root>/<subset>/train-XXXXX-of-NNNNN-*.parquet). With no names it takes every subset
// folder present.
func CauldronSources(root string, subsets ...string) ([]Source, error) {
	if len(subsets) == 0 {
		ents, err := os.ReadDir(root)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() {
				if m, _ := filepath.Glob(filepath.Join(root, e.Name(), "train-*.parquet")); len(m) > 0 {
					subsets = append(subsets, e.Name())
				}
			}
		}
		if len(subsets) == 0 {
			return nil, fmt.Errorf("no <subset>/train-*.parquet folders under %s", root)
		}
	}
	var out []Source
	for _, name := range subsets {
		files, err := Files(filepath.Join(root, name, "train-*.parquet"))
		if err != nil {
			return nil, fmt.Errorf("cauldron subset %q: %w", name, err)
		}
		out = append(out, Source{Name: name, Files: files, Layout: Cauldron})
	}
	return out, nil
}

// DocVQASource is a split of lmms-lab/DocVQA on disk: <root>/DocVQA/<split>-*.parquet (the
// hub layout; root itself is tried too). Use split "validation" locally: test answers are
// hidden.
func DocVQASource(root, split string) (Source, error) {
	return evalSource("docvqa_"+split, DocVQA, filepath.Join(root, "DocVQA", split+"-*.parquet"), filepath.Join(root, split+"-*.parquet"))
}

// TextVQASource is a split of lmms-lab/textvqa on disk: <root>/data/<split>-*.parquet.
func TextVQASource(root, split string) (Source, error) {
	return evalSource("textvqa_"+split, TextVQA, filepath.Join(root, "data", split+"-*.parquet"), filepath.Join(root, split+"-*.parquet"))
}

func evalSource(name string, l Layout, patterns ...string) (Source, error) {
	for _, p := range patterns {
		if m, _ := filepath.Glob(p); len(m) > 0 {
			sort.Strings(m)
			return Source{Name: name, Files: m, Layout: l}, nil
		}
	}
	return Source{}, fmt.Errorf("%s: no files match %s", name, strings.Join(patterns, " or "))
}

// CustomSource is a custom dataset: parquet or JSONL files (paths, folders or globs) read
// with the given columns.
func CustomSource(name string, layout CustomLayout, patterns ...string) (Source, error) {
	files, err := Files(patterns...)
	if err != nil {
		return Source{}, fmt.Errorf("source %q: %w", name, err)
	}
	return Source{Name: name, Files: files, Layout: layout}, nil
}

// CountRows opens the sources as a stream would (footers only for parquet, one scan for JSONL)
// and returns their rows before bad ones are skipped, per source and in total: what a trainer
// needs to turn epochs into steps.
func CountRows(srcs []Source, stats *Stats) (map[string]int64, int64, error) {
	if stats == nil {
		stats = NewStats(nil)
	}
	per := map[string]int64{}
	var total int64
	for _, s := range srcs {
		o, err := openSource(s, stats)
		if err != nil {
			return nil, 0, err
		}
		per[s.Name] = o.Rows()
		total += o.Rows()
	}
	return per, total, nil
}

// unit is one row group (or JSONL chunk) of a source.
type unit struct {
	file     int
	group    int
	firstRow int64 // row number of its first row within its file
	rows     int
}

// openedSource is a source whose files have been opened once, to check their schema and learn
// their row groups.
type openedSource struct {
	Source
	files       []dataFile
	paths       []string
	units       []unit
	fingerprint string
}

func openSource(src Source, stats *Stats) (*openedSource, error) {
	if src.Layout == nil {
		return nil, fmt.Errorf("source %q: no layout", src.Name)
	}
	if len(src.Files) == 0 {
		return nil, fmt.Errorf("source %q: no files", src.Name)
	}
	o := &openedSource{Source: src}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", src.Layout.Name())
	for _, p := range src.Files {
		var f dataFile
		var err error
		if strings.HasSuffix(p, ".jsonl") {
			f, err = openJSONL(p, src.Layout)
		} else {
			f, err = openParquet(p, src.Layout)
		}
		if errors.Is(err, errUnreadable) {
			stats.Skipped(ReasonTruncatedFile, 1, Ref{Source: src.Name, File: p, Row: -1}, err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", src.Name, err)
		}
		fi := len(o.files)
		o.files = append(o.files, f)
		o.paths = append(o.paths, p)
		var first int64
		for g, n := range f.unitRows() {
			if n > 0 {
				o.units = append(o.units, unit{file: fi, group: g, firstRow: first, rows: n})
			}
			first += int64(n)
		}
		// Base names, not full paths: a dataset folder moved to another disk still resumes.
		fmt.Fprintf(h, "%s %v\n", filepath.Base(p), f.unitRows())
	}
	if len(o.units) == 0 {
		return nil, fmt.Errorf("source %q: no readable rows in %d files", src.Name, len(src.Files))
	}
	o.fingerprint = hex.EncodeToString(h.Sum(nil))[:16]
	return o, nil
}

// Rows is the number of rows of the source's readable files (before bad rows are skipped).
func (o *openedSource) Rows() int64 {
	var n int64
	for _, u := range o.units {
		n += int64(u.rows)
	}
	return n
}
