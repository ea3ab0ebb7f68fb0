package train

import (
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/idefics2/idefics2/cauldron"
)

// countRows reads the row counts from the parquet footers of every file.
func countRows(srcs []cauldron.Source) (int64, error) {
	var n int64
	for _, s := range srcs {
		for _, f := range s.Files {
			r, err := file.OpenParquetFile(f, false)
			if err != nil {
				return 0, err
			}
			n += r.NumRows()
			r.Close()
		}
	}
	return n, nil
}
