package quant

import (
	"fmt"
	"sort"
)

// Type is a 4-bit code table.
type Type string

const (
	NF4 Type = "nf4"
	FP4 Type = "fp4"
)

// ParseType accepts "nf4" or "fp4".
func ParseType(s string) (Type, error) {
	switch Type(s) {
	case NF4, FP4:
		return Type(s), nil
	}
	return "", fmt.Errorf("unknown 4-bit quant type %q (bitsandbytes has nf4 and fp4)", s)
}

// nf4Code is NormalFloat4: the quantiles of N(0, 1) that give each of the 16 bins equal mass,
// scaled to [−1, 1], with an exact zero (QLoRA, Dettmers et al. 2023). Index = the 4-bit code.
var nf4Code = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// fp4Raw is the FP4 (1 sign, 2 exponent, 1 mantissa bit, bias 2) value of each code in bit
// order; bitsandbytes divides the table by its largest magnitude (12) in float32.
var fp4Raw = [16]float32{0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3}

var fp4Code = func() (c [16]float32) {
	for i, v := range fp4Raw {
		c[i] = v / 12
	}
	return c
}()

// Code returns the 16 values the codes of t stand for, in code order.
func (t Type) Code() [16]float32 {
	if t == FP4 {
		return fp4Code
	}
	return nf4Code
}

// table4 is what quantizing to a 4-bit type needs: the midpoints between consecutive values of
// the sorted table and, for each bucket, the code that holds that value.
type table4 struct {
	bounds [15]float32
	code   [16]uint8
	// start[g] is the bucket of the lower edge of grid cell g of [−1, 1] (gridCells cells, each
	// narrower than the closest two midpoints), where bucket's search begins.
	start [gridCells + 1]uint8
}

const gridCells = 4096

var tables4 = map[Type]*table4{NF4: newTable4(nf4Code), FP4: newTable4(fp4Code)}

func newTable4(code [16]float32) *table4 {
	order := make([]int, 16)
	for i := range order {
		order[i] = i
	}
	// The FP4 table holds zero twice (codes 0 and 8); a stable sort keeps code 0 first, as
	// PyTorch's argsort does for these 16 values, so values in (−0.0026, 0] take code 0 and
	// those in (0, 0.0026] take code 8.
	sort.SliceStable(order, func(a, b int) bool { return code[order[a]] < code[order[b]] })
	t := &table4{}
	for i := range order {
		t.code[i] = uint8(order[i])
	}
	for i := 0; i < 15; i++ {
		t.bounds[i] = (code[order[i]] + code[order[i+1]]) / 2
	}
	for g := range t.start {
		edge := float32(-1 + 2*float64(g)/gridCells)
		t.start[g] = uint8(t.searchSorted(edge))
	}
	return t
}

// searchSorted is the number of bounds strictly below x.
func (t *table4) searchSorted(x float32) int {
	i := 0
	for i < 15 && t.bounds[i] < x {
		i++
	}
	return i
}

// bucket is torch.bucketize(x, bounds, right=False): the number of bounds strictly below x, so a
// value exactly on a midpoint goes to the lower bucket.
// x must lie in [−1, 1]. The search starts at the grid cell's bucket and walks to the exact one,
// so the grid only saves comparisons, never decides.
func (t *table4) bucket(x float32) uint8 {
	i := int(t.start[int((x+1)*(gridCells/2))])
	for i < 15 && t.bounds[i] < x {
		i++
	}
	for i > 0 && !(t.bounds[i-1] < x) {
		i--
	}
	return t.code[i]
}
