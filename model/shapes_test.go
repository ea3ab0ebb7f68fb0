package model_test

import (
	"slices"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/idefics2/idefics2/internal/backend"
	"github.com/idefics2/idefics2/model"
)

// The full 8b graph builds shape-only (variables declared, no values, nothing compiled or
// allocated) and every stage has the shape HF gives: one 980×378 image → 70×27 patches → 64
// latents merged into a 130-token prompt.
func TestBuild8BShapeOnly(t *testing.T) {
	be, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	m := model.New(model.Idefics2_8B(), dtypes.BFloat16)
	m.DeclareShapes()
	if got := m.Ctx.NumParameters(); got != 8_402_768_112 {
		t.Fatalf("declared %d parameters, want 8402768112", got)
	}
	g := graph.NewGraph(be, "idefics2-8b-shapes")
	defer g.Finalize()
	const B, T, H, W = 1, 130, 980, 378
	p := 14
	P := (H / p) * (W / p)
	i32 := func(name string, dims ...int) *graph.Node {
		return graph.Parameter(g, name, shapes.Make(dtypes.Int32, dims...))
	}
	in := model.GraphInputs{
		InputIDs: i32("ids", B, T), AttentionMask: i32("mask", B, T), PositionIDs: i32("pos", B, T),
		Pixels:    graph.Parameter(g, "pixels", shapes.Make(dtypes.Float32, 1, 3, H, W)),
		PatchMask: i32("patch_mask", 1, P), VisionPositionIDs: i32("vpos", 1, P), ImageRow: i32("rows", B, T),
	}
	out := m.Forward(m.Ctx, in)
	check := func(name string, n *graph.Node, want ...int) {
		if got := n.Shape().Dimensions; !slices.Equal(got, want) {
			t.Errorf("%s: shape %v, want %v", name, got, want)
		}
	}
	check("vision", out.Vision, 1, P, 1152)
	check("image_hidden", out.ImageHidden, 1, 64, 4096)
	check("logits", out.Logits, B, T, 32003)
}
