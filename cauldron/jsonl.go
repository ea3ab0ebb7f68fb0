package cauldron

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// jsonlChunk is how many lines make one unit of a JSONL file: small enough to shuffle well,
// large enough that seeking to a unit is rare.
const jsonlChunk = 256

// jsonlFile is a JSONL dataset: one JSON object per line, image paths relative to the file.
// Opening scans the file once for the byte offset of each chunk; rows are parsed when their
// chunk is read, so memory does not grow with the file.
type jsonlFile struct {
	path    string
	layout  CustomLayout
	offsets []int64
	rows    []int
}

func openJSONL(path string, layout Layout) (*jsonlFile, error) {
	cl, ok := layout.(CustomLayout)
	if !ok {
		return nil, fmt.Errorf("%s: JSONL files need a custom layout (columns), not %q", path, layout.Name())
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	f := &jsonlFile{path: path, layout: cl}
	r := bufio.NewReaderSize(fh, 1<<16)
	var off int64
	n := 0
	for {
		start, length := off, 0
		var err error
		for {
			var part []byte
			part, err = r.ReadSlice('\n')
			length += len(part)
			if err != bufio.ErrBufferFull { // a line longer than the buffer comes in parts
				break
			}
		}
		if length > 0 {
			if n%jsonlChunk == 0 {
				f.offsets = append(f.offsets, start)
				f.rows = append(f.rows, 0)
			}
			f.rows[len(f.rows)-1]++
			n++
			off += int64(length)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *jsonlFile) unitRows() []int { return f.rows }

func (f *jsonlFile) readUnit(ctx context.Context, u int, ref Ref) ([]row, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if _, err := fh.Seek(f.offsets[u], io.SeekStart); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(fh, 1<<16)
	out := make([]row, 0, f.rows[u])
	for len(out) < f.rows[u] {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err != nil {
			return out, fmt.Errorf("%s: file ended inside unit %d: %w", f.path, u, err)
		}
		rw := row{rec: Record{Ref: ref}}
		rw.rec.Row = ref.Row + int64(len(out))
		rw.err = f.decode(bytes.TrimSpace(line), &rw.rec)
		out = append(out, rw)
	}
	return out, nil
}

// decode reads one line with the same column rules as a custom parquet file.
func (f *jsonlFile) decode(line []byte, rec *Record) error {
	if len(line) == 0 {
		return skipf(ReasonEmptyField, "empty line")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return Skip(ReasonBadJSON, err)
	}
	l := f.layout
	c := l.Columns.resolve(func(n string) bool { _, ok := obj[n]; return ok })
	if c.Images != "" {
		ic := &imageColumn{name: c.Images, dir: filepath.Dir(f.path)}
		raw := obj[c.Images]
		var one string
		var many []string
		switch {
		case raw == nil || string(raw) == "null":
			return skipf(ReasonNullField, "%q is null", c.Images)
		case json.Unmarshal(raw, &one) == nil:
			many = []string{one}
		case json.Unmarshal(raw, &many) == nil:
		default:
			return Skip(ReasonBadJSON, fmt.Errorf("%q is neither a path nor a list of paths", c.Images))
		}
		for _, p := range many {
			im, err := ic.fromPath(p)
			if err != nil {
				return err
			}
			rec.Images = append(rec.Images, im)
		}
	}
	str := func(name string) (string, bool) {
		var s *string
		if raw, ok := obj[name]; ok && json.Unmarshal(raw, &s) == nil && s != nil {
			return *s, true
		}
		return "", false
	}
	switch {
	case c.Messages != "":
		var raw []jsonMessage
		if err := json.Unmarshal(obj[c.Messages], &raw); err != nil {
			return Skip(ReasonBadJSON, fmt.Errorf("%q: %w", c.Messages, err))
		}
		var err error
		if rec.Chat, err = chatFromJSON(raw); err != nil {
			return err
		}
	case c.Texts != "":
		var turns []*Turn
		if err := json.Unmarshal(obj[c.Texts], &turns); err != nil {
			return Skip(ReasonBadJSON, fmt.Errorf("%q: %w", c.Texts, err))
		}
		if len(turns) == 0 {
			return skipf(ReasonEmptyField, "%q is empty", c.Texts)
		}
		for i, t := range turns {
			if t == nil || t.User == "" || t.Assistant == "" {
				return skipf(ReasonEmptyField, "%s[%d] has an empty user or assistant text", c.Texts, i)
			}
			rec.Turns = append(rec.Turns, *t)
		}
	case c.Question != "":
		q, ok := str(c.Question)
		if !ok || strings.TrimSpace(q) == "" {
			return skipf(ReasonEmptyField, "%q is missing or empty", c.Question)
		}
		rec.Question = q
		if a, ok := str(c.Answer); ok {
			rec.Answers = []string{a}
		} else if raw, ok := obj[c.Answer]; ok {
			_ = json.Unmarshal(raw, &rec.Answers)
		}
	default:
		return skipf(ReasonNullField, "no messages, texts or question")
	}
	if c.ID != "" {
		if raw, ok := obj[c.ID]; ok {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				s = string(raw)
			}
			rec.ID = s
		}
	}
	return l.finish(rec)
}
