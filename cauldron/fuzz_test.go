package cauldron

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Fuzz targets for what the readers take from files: a chat messages column (JSON), a custom
// JSONL row, and a parquet row's conversion into a Record. Each must end in a Record or a
// SkipError (a counted, logged skip), never a panic or another error. Seeds:
// testdata/fuzz/<target>.

// checkRow fails the fuzz run unless err is nil or a skip, and exercises the record's accessors.
func checkRow(t *testing.T, rec *Record, err error) {
	t.Helper()
	if err != nil {
		if _, ok := AsSkip(err); !ok {
			t.Fatalf("not a skip: %v", err)
		}
		return
	}
	rec.Messages()
	rec.Prompt()
	rec.ImageBytes()
}

func FuzzChatMessages(f *testing.F) {
	f.Add([]byte(`[{"role":"user","content":[{"type":"image"},{"type":"text","text":"What?"}]},{"role":"assistant","content":"A cat."}]`))
	f.Add([]byte(`[{"from":"human","value":"<image>\nWhat?"},{"from":"gpt","value":"A cat."}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := parseChatJSON(b)
		rec := &Record{Chat: msgs}
		checkRow(t, rec, err)
	})
}

// smallPNG is a valid 2×2 PNG that relative image paths in fuzzed rows can name.
func smallPNG() []byte {
	var b bytes.Buffer
	_ = png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 2, 2)))
	return b.Bytes()
}

func FuzzJSONLRow(f *testing.F) {
	f.Add([]byte(`{"image": "a.png", "question": "Which shape?", "answer": "A square."}`))
	f.Add([]byte(`{"images": ["a.png", "a.png"], "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Same?"}]}, {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}], "id": 3}`))
	f.Add([]byte(`{"image": "a.png", "texts": [{"user": "<image>What?", "assistant": "Red."}]}`))
	f.Add([]byte(`{"image": null, "question": "?"}`))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.png"), smallPNG(), 0o644); err != nil {
		f.Fatal(err)
	}
	file := &jsonlFile{path: filepath.Join(dir, "rows.jsonl"), layout: CustomLayout{}}
	f.Fuzz(func(t *testing.T, line []byte) {
		if !pathsStayInside(line) {
			return // a fuzzed row may name any file of this machine; only read the test's own
		}
		rec := &Record{}
		checkRow(t, rec, file.decode(bytes.TrimSpace(line), rec))
	})
}

// pathsStayInside tells whether every image path a row names is relative and stays in its
// directory.
func pathsStayInside(line []byte) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(bytes.TrimSpace(line), &obj) != nil {
		return true
	}
	for k, raw := range obj {
		var one string
		var many []string
		_ = json.Unmarshal(raw, &one)
		_ = json.Unmarshal(raw, &many)
		if k != "images" && k != "image" {
			continue
		}
		for _, p := range append(many, one) {
			if filepath.IsAbs(p) || strings.Contains(p, "..") {
				return false
			}
		}
	}
	return true
}

// parquetSchemas are the row shapes a parquet file of each layout has.
var parquetSchemas = []struct {
	layout Layout
	schema *arrow.Schema
}{
	{Cauldron, arrow.NewSchema([]arrow.Field{
		{Name: "images", Type: arrow.ListOf(arrow.StructOf(
			arrow.Field{Name: "bytes", Type: arrow.BinaryTypes.Binary, Nullable: true},
			arrow.Field{Name: "path", Type: arrow.BinaryTypes.String, Nullable: true})), Nullable: true},
		{Name: "texts", Type: arrow.ListOf(arrow.StructOf(
			arrow.Field{Name: "user", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "assistant", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "source", Type: arrow.BinaryTypes.String, Nullable: true})), Nullable: true},
	}, nil)},
	{CustomLayout{}, arrow.NewSchema([]arrow.Field{
		{Name: "image", Type: arrow.StructOf(
			arrow.Field{Name: "bytes", Type: arrow.BinaryTypes.Binary, Nullable: true},
			arrow.Field{Name: "path", Type: arrow.BinaryTypes.String, Nullable: true}), Nullable: true},
		{Name: "messages", Type: arrow.ListOf(arrow.StructOf(
			arrow.Field{Name: "role", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "content", Type: arrow.ListOf(arrow.StructOf(
				arrow.Field{Name: "type", Type: arrow.BinaryTypes.String, Nullable: true},
				arrow.Field{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true})), Nullable: true})), Nullable: true},
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)},
	{DocVQA, arrow.NewSchema([]arrow.Field{
		{Name: "questionId", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "question", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "image", Type: arrow.StructOf(
			arrow.Field{Name: "bytes", Type: arrow.BinaryTypes.Binary, Nullable: true},
			arrow.Field{Name: "path", Type: arrow.BinaryTypes.String, Nullable: true}), Nullable: true},
		{Name: "answers", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)},
}

// FuzzParquetRecord: rows of each layout's schema, written as JSON and built into Arrow columns
// (what a parquet row group is after reading), are converted into Records by the layout's
// binding. The binding's decode is called directly, without decodeRow's recover, so that a
// panic it would hide from a run is found here.
func FuzzParquetRecord(f *testing.F) {
	f.Add(uint8(0), []byte(`[{"images":[{"bytes":"iVBORw0KGgo=","path":null}],"texts":[{"user":"<image>What?","assistant":"Red.","source":"x"}]}]`))
	f.Add(uint8(1), []byte(`[{"image":{"bytes":"iVBORw0KGgo="},"messages":[{"role":"user","content":[{"type":"image"},{"type":"text","text":"What?"}]},{"role":"assistant","content":[{"type":"text","text":"Red."}]}],"id":1}]`))
	f.Add(uint8(2), []byte(`[{"questionId":"7","question":"Total?","image":{"bytes":"iVBORw0KGgo="},"answers":["3","three"]},{"question":null}]`))
	f.Fuzz(func(t *testing.T, which uint8, rows []byte) {
		s := parquetSchemas[int(which)%len(parquetSchemas)]
		rb := recordFromJSON(s.schema, rows)
		if rb == nil {
			return
		}
		defer rb.Release()
		b, err := s.layout.bind(s.schema, "fuzz.parquet")
		if err != nil {
			t.Fatalf("%s does not bind its own schema: %v", s.layout.Name(), err)
		}
		cols := make([]arrow.Array, len(b.columns))
		for i, name := range b.columns {
			idx := rb.Schema().FieldIndices(name)
			if len(idx) == 0 {
				t.Fatalf("binding reads column %q the schema lacks", name)
			}
			cols[i] = rb.Column(idx[0])
		}
		for i := 0; i < int(rb.NumRows()); i++ {
			rec := &Record{}
			checkRow(t, rec, b.decode(cols, i, rec))
		}
	})
}

// recordFromJSON builds the Arrow columns of rows, or returns nil for input that arrow's JSON
// reader rejects (or panics on: that reader only builds this harness's input, no run uses it).
func recordFromJSON(sc *arrow.Schema, rows []byte) (rb arrow.RecordBatch) {
	if !json.Valid(rows) {
		return nil
	}
	defer func() {
		if recover() != nil {
			rb = nil
		}
	}()
	rb, _, err := array.RecordFromJSON(memory.DefaultAllocator, sc, bytes.NewReader(rows))
	if err != nil {
		return nil
	}
	return rb
}
