package cauldron

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// A custom parquet whose image column holds paths relative to the file, read with named
// columns; and a text-only file accepted only when the layout allows it.
func TestCustomParquetWithImagePaths(t *testing.T) {
	dir := t.TempDir()
	png, err := os.ReadFile(filepath.Join(fixtureRoot, "custom/jsonl/images/shape_1.png"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "img"), 0o755)
	os.WriteFile(filepath.Join(dir, "img/a.png"), png, 0o644)
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "file", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "q", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "a", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"img/a.png", "img/missing.png"}, nil)
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"Which shape?", "Which?"}, nil)
	lb := b.Field(2).(*array.ListBuilder)
	for range 2 {
		lb.Append(true)
		lb.ValueBuilder().(*array.StringBuilder).AppendValues([]string{"Square.", "A square."}, nil)
	}
	b.Field(3).(*array.Int64Builder).AppendValues([]int64{7, 8}, nil)
	rec := b.NewRecordBatch()
	path := filepath.Join(dir, "qa.parquet")
	f, _ := os.Create(path)
	w, err := pqarrow.NewFileWriter(sc, f, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rec)
	w.Close()

	src, err := CustomSource("qa", CustomLayout{Columns: Columns{Images: "file", Question: "q", Answer: "a", ID: "n"}}, filepath.Join(dir, "*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	var got []*Record
	var bad []error
	if err := Scan(context.Background(), src, nil, func(r *Record, e error) error {
		rc := *r
		got, bad = append(got, &rc), append(bad, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := got[0]
	if bad[0] != nil || r.ID != "7" || r.Images[0].Path != "img/a.png" || sha(r.Images[0].Bytes) != sha(png) ||
		len(r.Turns) != 1 || r.Turns[0].Assistant != "Square." || len(r.Answers) != 2 {
		t.Fatalf("row 0: %+v %v", r, bad[0])
	}
	if reason, _ := AsSkip(bad[1]); reason != ReasonBadImage {
		t.Fatalf("missing image file: %v", bad[1])
	}

	// Text only: a schema error unless allowed.
	_, err = Open([]Source{{Name: "t", Files: []string{path}, Layout: CustomLayout{Columns: Columns{Question: "q", Answer: "a"}}}}, Options{})
	if err == nil {
		t.Fatal("a layout without images must name the missing column")
	}
	s, err := Open([]Source{{Name: "t", Files: []string{path}, Layout: CustomLayout{AllowNoImages: true, Columns: Columns{Question: "q", Answer: "a"}}}}, Options{Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.Next(context.Background()); err != nil || len(r.Images) != 0 || r.Messages()[0].Content[0].Text != "Which shape?" {
		t.Fatalf("text-only: %+v %v", r, err)
	}
	per, total, err := CountRows([]Source{src}, nil)
	if err != nil || total != 2 || per["qa"] != 2 {
		t.Fatalf("CountRows %v %d %v", per, total, err)
	}
}
