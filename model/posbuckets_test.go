package model

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"
)

// The bucket table for S=70 produced with PyTorch's float32 arange+bucketize (the original
// algorithm) for every n in 1..70; the row for n holds the bucket of each of its n rows.
func TestPositionBucketsTable70(t *testing.T) {
	data, err := os.ReadFile("../testdata/spec/idefics2_pos_bucket_table.json")
	if err != nil {
		t.Fatal(err)
	}
	var table map[string][]int
	if err := json.Unmarshal(data, &table); err != nil {
		t.Fatal(err)
	}
	if len(table) != 70 {
		t.Fatalf("table has %d rows, want 70", len(table))
	}
	for key, want := range table {
		n, _ := strconv.Atoi(key)
		got := PositionBuckets(n, 70)
		if len(got) != len(want) {
			t.Fatalf("n=%d: %d buckets, want %d", n, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("n=%d i=%d: bucket %d, reference %d", n, i, got[i], want[i])
			}
		}
	}
}
