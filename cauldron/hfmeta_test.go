package cauldron

import (
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func TestHFImageFeatureFindsTheImageColumn(t *testing.T) {
	// The fixtures are written by datasets 5 ("List"); the hub's Cauldron by datasets 2.x
	// ("Sequence", and texts as a plain JSON list).
	for _, meta := range []string{
		`{"info": {"features": {"pic": {"feature": {"_type": "Image"}, "_type": "Sequence"}, "texts": [{"user": {"dtype": "string", "_type": "Value"}}]}}}`,
		`{"info": {"features": {"pic": {"feature": {"_type": "Image"}, "_type": "List"}}}}`,
		`{"info": {"features": {"pic": {"_type": "Image"}}}}`,
	} {
		sc := arrow.NewSchema([]arrow.Field{{Name: "texts", Type: arrow.BinaryTypes.String}, {Name: "pic", Type: arrow.BinaryTypes.String}},
			func() *arrow.Metadata { m := arrow.NewMetadata([]string{"huggingface"}, []string{meta}); return &m }())
		if got := hfImageColumn(sc); got != "pic" {
			t.Errorf("%s: got %q", meta, got)
		}
	}
	// And on a file HF datasets wrote.
	pf, err := file.OpenParquetFile(filepath.Join(fixtureRoot, "lmms-lab/textvqa/data/validation-00000-of-00001.parquet"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, _ := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	sc, _ := fr.Schema()
	if got := hfImageColumn(sc); got != "image" {
		t.Fatalf("textvqa fixture: %q", got)
	}
}
