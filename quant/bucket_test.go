package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The grid that starts bucket's search must never change its answer: on every midpoint, its
// float32 neighbours and random values, bucket agrees with a plain count of the bounds below x
// (the definition of torch.bucketize(right=False) that the fixtures check against bitsandbytes).
func TestBucketGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for typ, tab := range tables4 {
		var xs []float32
		for _, b := range tab.bounds {
			xs = append(xs, b, math.Nextafter32(b, 2), math.Nextafter32(b, -2))
		}
		for g := 0; g <= gridCells; g++ {
			e := float32(-1 + 2*float64(g)/gridCells)
			xs = append(xs, e, math.Nextafter32(e, 2), math.Nextafter32(e, -2))
		}
		for i := 0; i < 100000; i++ {
			xs = append(xs, float32(2*rng.Float64()-1))
		}
		xs = append(xs, -1, 1, 0)
		for _, x := range xs {
			x = clamp1(x)
			if got, want := tab.bucket(x), tab.code[tab.searchSorted(x)]; got != want {
				t.Fatalf("%s: bucket(%g) = %d, want %d", typ, x, got, want)
			}
		}
	}
}

func TestQuantizeRejectsNaN(t *testing.T) {
	x := make([]float32, 70)
	x[65] = float32(math.NaN())
	if _, err := Quantize4(x, []int{70}, NF4, false); err == nil {
		t.Error("a NaN weight was quantized")
	}
}
