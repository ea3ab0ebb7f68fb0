package cauldron

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/file"
)

func badSource(t *testing.T, extra ...string) Source {
	t.Helper()
	files, err := Files(append([]string{filepath.Join(fixtureRoot, "bad/broken/*.parquet"), filepath.Join(fixtureRoot, "bad/truncated/*.parquet")}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return Source{Name: "bad", Files: files, Layout: Cauldron}
}

func drain(t *testing.T, s *Stream) []Record {
	t.Helper()
	var out []Record
	for {
		r, err := s.Next(context.Background())
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

// Every kind of bad record is skipped, counted under its reason and logged with its file and
// row, and the good records around them still come through.
func TestBadRecordsAreCountedAndSkipped(t *testing.T) {
	var log bytes.Buffer
	stats := NewStats(slog.New(slog.NewTextHandler(&log, nil)))
	s, err := Open([]Source{badSource(t)}, Options{Epochs: 1, Validate: validateHeaders, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	recs := drain(t, s)
	if len(recs) != 2 || recs[0].Row != 0 || recs[1].Row != 9 {
		t.Fatalf("good records %+v, want rows 0 and 9", recs)
	}
	good, skipped := stats.Counts()
	want := map[Reason]int64{ReasonNullField: 3, ReasonEmptyField: 3, ReasonBadImage: 1, ReasonImageCount: 1, ReasonTruncatedFile: 1}
	if good != 2 || !jsonEqual(skipped, want) {
		t.Fatalf("good %d skipped %v, want 2 and %v", good, skipped, want)
	}
	sum := stats.Summary()
	if sum != "2 good, 9 skipped (bad_image=1 empty_field=3 image_count_mismatch=1 null_field=3 truncated_file=1)" {
		t.Errorf("summary %q", sum)
	}
	for _, want := range []string{"reason=null_field", "row=1", "broken/train-00000-of-00001", "reason=truncated_file", "reason=image_count_mismatch", "row=5"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

// Without a Validate hook, corrupt bytes reach the processing function, which skips them.
func TestPoolSkipsWhatProcessingRejects(t *testing.T) {
	stats := NewStats(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, err := Open([]Source{badSource(t)}, Options{Epochs: 1, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPool(context.Background(), s, decodeImages, PoolOptions{Workers: 2})
	defer p.Close()
	n := 0
	for {
		it, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(it.Value) != 1 {
			t.Fatalf("item %+v", it.Ref)
		}
		n++
	}
	good, skipped := stats.Counts()
	if n != 2 || good != 2 || skipped[ReasonBadImage] != 1 || p.Throughput().Skipped != 1 {
		t.Fatalf("%d items, good %d, skipped %v", n, good, skipped)
	}
}

// A row group whose pages are damaged is lost as a whole (counted by its rows); the rest of
// the file is read.
func TestDamagedRowGroupIsSkipped(t *testing.T) {
	src := cauldronFixtures(t)[0] // tiny_shapes: 4 row groups of 8
	b, err := os.ReadFile(src.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	pf, err := file.OpenParquetFile(src.Files[0], false)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := pf.MetaData().RowGroup(1).ColumnChunk(0)
	if err != nil {
		t.Fatal(err)
	}
	off := cc.DataPageOffset()
	pf.Close()
	for i := int64(0); i < 16; i++ {
		b[off+i] = 0xff
	}
	path := filepath.Join(t.TempDir(), "train-00000-of-00001-damaged.parquet")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stats := NewStats(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s, err := Open([]Source{{Name: "damaged", Files: []string{path}, Layout: Cauldron}}, Options{Epochs: 1, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	recs := drain(t, s)
	good, skipped := stats.Counts()
	if len(recs) != 24 || good != 24 || skipped[ReasonReadError] != 8 {
		t.Fatalf("%d records, good %d, skipped %v", len(recs), good, skipped)
	}
	for _, r := range recs {
		if r.Row >= 8 && r.Row < 16 {
			t.Fatalf("row %d of the damaged row group came through", r.Row)
		}
	}
}

func TestJSONLBadLines(t *testing.T) {
	dir := t.TempDir()
	png, _ := os.ReadFile(filepath.Join(fixtureRoot, "custom/jsonl/images/shape_0.png"))
	os.WriteFile(filepath.Join(dir, "a.png"), png, 0o644)
	lines := []string{
		`{"image": "a.png", "question": "Q?", "answer": "A."}`,
		`{"image": "missing.png", "question": "Q?", "answer": "A."}`,
		`not json`,
		`{"image": "a.png", "question": "", "answer": "A."}`,
		`{"images": ["a.png"], "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q"}]}, {"role": "assistant", "content": "A"}]}`,
		`{"images": ["a.png"], "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]}, {"role": "assistant", "content": "A"}]}`,
	}
	path := filepath.Join(dir, "train.jsonl")
	os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	var reasons []string
	err := Scan(context.Background(), Source{Name: "j", Files: []string{path}, Layout: CustomLayout{}}, nil, func(r *Record, bad error) error {
		reason, _ := AsSkip(bad)
		reasons = append(reasons, string(reason))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", "bad_image", "bad_json", "empty_field", "image_count_mismatch", ""}
	if strings.Join(reasons, ",") != strings.Join(want, ",") {
		t.Fatalf("reasons %q, want %q", reasons, want)
	}
}
