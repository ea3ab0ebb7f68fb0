package cauldron

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// row is one decoded row: a record, or the reason it must be skipped.
type row struct {
	rec Record
	err error
}

// dataFile is one file of a source, read one unit at a time. A unit is a parquet row group
// (or a chunk of JSONL lines): the smallest piece that can be read without reading the rest,
// so the unit is also what the shuffle permutes and what ranks split.
type dataFile interface {
	unitRows() []int
	readUnit(ctx context.Context, u int, ref Ref) ([]row, error)
}

// errUnreadable marks a file that exists but cannot be opened as its format (a truncated
// download, a damaged footer): it is skipped and counted, not fatal.
var errUnreadable = errors.New("unreadable file")

type parquetFile struct {
	path   string
	meta   *metadata.FileMetaData
	bind   *binding
	leaves []int // parquet leaf columns of the bound top-level columns
	rows   []int
}

func openParquet(path string, layout Layout) (*parquetFile, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errUnreadable, path, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errUnreadable, path, err)
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errUnreadable, path, err)
	}
	b, err := layout.bind(sc, path)
	if err != nil {
		return nil, err
	}
	f := &parquetFile{path: path, meta: pf.MetaData(), bind: b}
	for _, name := range b.columns {
		idx := sc.FieldIndices(name)
		f.leaves = appendLeaves(f.leaves, &fr.Manifest.Fields[idx[0]])
	}
	for g := 0; g < pf.NumRowGroups(); g++ {
		f.rows = append(f.rows, int(pf.MetaData().RowGroup(g).NumRows()))
	}
	return f, nil
}

func appendLeaves(out []int, f *pqarrow.SchemaField) []int {
	if f.IsLeaf() {
		return append(out, f.ColIndex)
	}
	for i := range f.Children {
		out = appendLeaves(out, &f.Children[i])
	}
	return out
}

func (f *parquetFile) unitRows() []int { return f.rows }

// readUnit reads one row group and decodes it. Only the bound columns are read; the footer
// kept from opening is reused, so a reopen costs one open(2).
func (f *parquetFile) readUnit(ctx context.Context, g int, ref Ref) (out []row, err error) {
	// A damaged page can make the decoder panic; it is one lost row group, not a lost run.
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%s row group %d: %v", f.path, g, p)
		}
	}()
	mem := memory.DefaultAllocator
	props := parquet.NewReaderProperties(mem)
	pf, err := file.OpenParquetFile(f.path, false, file.WithMetadata(f.meta), file.WithReadProps(props))
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
	if err != nil {
		return nil, err
	}
	tbl, err := fr.ReadRowGroups(ctx, f.leaves, []int{g})
	if err != nil {
		return nil, err
	}
	defer tbl.Release()
	pos := make([]int, len(f.bind.columns))
	for i, name := range f.bind.columns {
		idx := tbl.Schema().FieldIndices(name)
		if len(idx) == 0 {
			return nil, fmt.Errorf("column %q missing from row group %d", name, g)
		}
		pos[i] = idx[0]
	}
	out = make([]row, 0, tbl.NumRows())
	tr := array.NewTableReader(tbl, 1<<20)
	defer tr.Release()
	cols := make([]arrow.Array, len(pos))
	for tr.Next() {
		batch := tr.RecordBatch()
		for i, p := range pos {
			cols[i] = batch.Column(p)
		}
		for i := 0; i < int(batch.NumRows()); i++ {
			r := row{rec: Record{Ref: ref}}
			r.rec.Row = ref.Row + int64(len(out))
			r.err = decodeRow(f.bind, cols, i, &r.rec)
			out = append(out, r)
		}
	}
	if err := tr.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeRow turns a decoder panic (a malformed nested value the type checks let through)
// into a skipped row rather than a crashed run.
func decodeRow(b *binding, cols []arrow.Array, i int, rec *Record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = skipf(ReasonReadError, "decoding row: %v", p)
		}
	}()
	return b.decode(cols, i, rec)
}
