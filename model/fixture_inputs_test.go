package model_test

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

func backendOf(b interface{}) backends.Backend { return b.(backends.Backend) }

// inputsFromFixture turns a fixture's inputs.safetensors into model.Inputs.
func inputsFromFixture(raw map[string]fixtures.Array) (model.Inputs, error) {
	ids, ok := raw["input_ids"]
	if !ok || len(ids.Shape) != 2 {
		return model.Inputs{}, fmt.Errorf("input_ids [B,T] missing")
	}
	in := model.Inputs{B: ids.Shape[0], T: ids.Shape[1], InputIDs: ids.I}
	if a, ok := raw["attention_mask"]; ok {
		in.AttentionMask = a.I
	}
	if a, ok := raw["labels"]; ok {
		in.Labels = a.I
	}
	if a, ok := raw["position_ids"]; ok {
		in.PositionIDs = a.I
	}
	if pv, ok := raw["pixel_values"]; ok {
		if len(pv.Shape) != 5 {
			return in, fmt.Errorf("pixel_values has shape %v, want [B,N,3,H,W]", pv.Shape)
		}
		in.N, in.H, in.W = pv.Shape[1], pv.Shape[3], pv.Shape[4]
		in.PixelValues = make([]float32, len(pv.F))
		for i, x := range pv.F {
			in.PixelValues[i] = float32(x)
		}
		if pm, ok := raw["pixel_attention_mask"]; ok {
			in.PixelAttentionMask = pm.I
			if pm.I == nil { // stored as floats
				in.PixelAttentionMask = make([]int64, len(pm.F))
				for i, x := range pm.F {
					in.PixelAttentionMask[i] = int64(x)
				}
			}
		}
	}
	return in, nil
}
