package lora

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/quant"
	"github.com/nlpodyssey/safetensors"
)

// dequantizedBase is the weight a QLoRA run trained against: the base weight in the dtype it was
// quantized from (bfloat16 values rounded to nearest), quantized to 4 bits as bitsandbytes does
// and dequantized again (rounded back to that dtype). Merging an adapter into it rather than into
// the original weight is the merge transformers and PEFT document for QLoRA adapters
// (model.dequantize(), then merge_and_unload()).
func dequantizedBase(w []float32, shape []int, q model.Quantization, from dtypes.DType) ([]float32, error) {
	bf16 := from == dtypes.BFloat16
	if bf16 {
		w = quant.FromBFloat16(quant.BFloat16Bits(w))
	}
	p, err := quant.Quantize4(w, shape, q.Type, q.DoubleQuant)
	if err != nil {
		return nil, err
	}
	out := p.Dequantize4()
	if bf16 {
		out = quant.FromBFloat16(quant.BFloat16Bits(out))
	}
	return out, nil
}

// mergeQuantized writes one Linear weight of a 4-bit base: dequantized, with the adapter folded
// in when it targets the module.
func mergeQuantized(bv safetensors.TensorView, e shardEntry, layout *Layout, tensor func(string) (safetensors.TensorView, bool),
	opt MergeOptions, outDT safetensors.DType, res *MergeResult) ([]byte, bool, error) {
	w, err := mappedFloats(bv)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", e.Name, err)
	}
	if w, err = dequantizedBase(w, e.Shape, opt.Dequantize, opt.QuantizedFrom); err != nil {
		return nil, false, fmt.Errorf("%s: %w", e.Name, err)
	}
	module := e.Name[:len(e.Name)-len(".weight")]
	if _, adapted := layout.LoRA[module+".lora_A.weight"]; adapted {
		if err := mergeModule(w, e.Shape, tensor, module, layout.Config); err != nil {
			return nil, false, err
		}
		res.Merged++
	}
	data, err := encodeFloats(w, outDT)
	return data, false, err
}
