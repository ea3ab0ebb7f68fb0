package model

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The 8b parameter list must equal the checkpoint's tensor list (spec file generated from the
// module structure) and its total the one in the checkpoint index, 8,402,768,112.
func TestParams8B(t *testing.T) {
	c := Idefics2_8B()
	per, total := c.ParamCounts()
	if total != 8_402_768_112 {
		t.Fatalf("8b total = %d, want 8402768112", total)
	}
	want := map[string]int64{"vision_model": 417_792_240, "modality_projection": 91_750_400,
		"perceiver_resampler": 651_468_800, "text_model": 7_110_672_384, "lm_head": 131_084_288}
	for k, v := range want {
		if per[k] != v {
			t.Errorf("%s: %d params, want %d", k, per[k], v)
		}
	}
	f, err := os.Open("../testdata/spec/idefics2_8b_weights.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shapes := map[string]string{}
	for _, p := range c.Params() {
		shapes[p.Name] = shapeString(p.Shape)
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		name, shape, _ := strings.Cut(sc.Text(), "\t")
		n++
		got, ok := shapes[name]
		if !ok {
			t.Errorf("%s: in the checkpoint but not in Params", name)
			continue
		}
		if strings.ReplaceAll(shape, " ", "") != strings.ReplaceAll(got, " ", "") {
			t.Errorf("%s: shape %s, want %s", name, got, shape)
		}
	}
	if n != len(shapes) {
		t.Errorf("checkpoint has %d tensors, Params %d", n, len(shapes))
	}
}

func shapeString(s []int) string {
	out := "["
	for i, d := range s {
		if i > 0 {
			out += ", "
		}
		out += strconv.Itoa(d)
	}
	return out + "]"
}
