package cauldron

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// cauldronSchema is The Cauldron's Arrow schema, for shards generated in tests.
var cauldronSchema = arrow.NewSchema([]arrow.Field{
	{Name: "images", Nullable: true, Type: arrow.ListOf(arrow.StructOf(
		arrow.Field{Name: "bytes", Type: arrow.BinaryTypes.Binary, Nullable: true},
		arrow.Field{Name: "path", Type: arrow.BinaryTypes.String, Nullable: true}))},
	{Name: "texts", Nullable: true, Type: arrow.ListOf(arrow.StructOf(
		arrow.Field{Name: "user", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "assistant", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "source", Type: arrow.BinaryTypes.String, Nullable: true}))},
}, nil)

// writeShard writes rows Cauldron rows of one incompressible image of imageBytes each, in row
// groups of groupRows, one row group in memory at a time.
func writeShard(t testing.TB, path string, rows, groupRows, imageBytes int) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(int64(groupRows)), parquet.WithCompression(compress.Codecs.Snappy))
	w, err := pqarrow.NewFileWriter(cauldronSchema, f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	img := make([]byte, imageBytes)
	b := array.NewRecordBuilder(memory.DefaultAllocator, cauldronSchema)
	defer b.Release()
	for start := 0; start < rows; start += groupRows {
		il := b.Field(0).(*array.ListBuilder)
		is := il.ValueBuilder().(*array.StructBuilder)
		tl := b.Field(1).(*array.ListBuilder)
		ts := tl.ValueBuilder().(*array.StructBuilder)
		for i := start; i < min(rows, start+groupRows); i++ {
			for j := range img {
				img[j] = byte(rng.Uint32())
			}
			il.Append(true)
			is.Append(true)
			is.FieldBuilder(0).(*array.BinaryBuilder).Append(img)
			is.FieldBuilder(1).(*array.StringBuilder).AppendNull()
			tl.Append(true)
			ts.Append(true)
			ts.FieldBuilder(0).(*array.StringBuilder).Append(fmt.Sprintf("Question %d?", i))
			ts.FieldBuilder(1).(*array.StringBuilder).Append("Answer.")
			ts.FieldBuilder(2).(*array.StringBuilder).Append("synthetic")
		}
		rec := b.NewRecordBatch()
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
