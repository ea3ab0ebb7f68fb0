package quant

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// GraphWeight is a packed 4-bit weight as graph nodes, named like the tensors transformers saves
// next to a Linear4bit weight.
type GraphWeight struct {
	Codes    *Node // Uint8, ⌈n/2⌉ bytes in any shape (transformers stores [⌈n/2⌉, 1])
	QuantMap *Node // Float32 [16], the code table
	Absmax   *Node // Float32 [blocks]; Uint8 [blocks] under double quantization
	// Double quantization only (nil otherwise).
	NestedAbsmax   *Node // Float32 [⌈blocks/256⌉]
	NestedQuantMap *Node // Float32 [256]
	NestedOffset   *Node // Float32 scalar
	// NestedBlocksize is the block of scales sharing one nested absmax (0 means 256).
	NestedBlocksize int
	Shape           []int // the weight's shape
	Blocksize       int
}

// DequantizeGraph rebuilds the float32 weight from its packed form: code[c]·absmax[block] for every
// element, the values bitsandbytes' dequantize_4bit computes before its cast to the weight's
// dtype. It is a pure function of its inputs: recomputing it in the backward pass (gradient
// checkpointing) gives the same weight, so the dequantized weight never has to be kept.
//
// It uses only ops every GoMLX backend has (no bit shifts): each byte indexes a 256-row table of
// code pairs (high nibble, low nibble) built from QuantMap, and the scales broadcast over their
// blocks.
func DequantizeGraph(w GraphWeight) *Node {
	g := w.Codes.Graph()
	n := NumElements(w.Shape)
	bs := w.Blocksize
	if bs <= 0 || bs%2 != 0 {
		panic(fmt.Sprintf("quant: blocksize %d is not a positive even number", bs))
	}
	blocks := (n + bs - 1) / bs
	nbytes := w.Codes.Shape().Size()
	if nbytes != (n+1)/2 {
		panic(fmt.Sprintf("quant: %d bytes of codes for shape %v, want %d", nbytes, w.Shape, (n+1)/2))
	}

	codes := padTo(Reshape(w.Codes, nbytes), blocks*bs/2)
	pairs := Reshape(Gather(w.QuantMap, Const(g, nibblePairs())), 256, 2)
	vals := Gather(pairs, InsertAxes(ConvertDType(codes, dtypes.Int32), -1)) // [bytes, 2]
	vals = Reshape(vals, blocks, bs)
	out := Mul(vals, InsertAxes(scalesGraph(w, blocks), -1))
	out = Reshape(out, blocks*bs)
	if blocks*bs != n {
		out = Slice(out, AxisRange(0, n))
	}
	return Reshape(out, w.Shape...)
}

// scalesGraph returns the float32 absmax of every block, dequantizing nested scales as
// bitsandbytes does: nested_quant_map[q]·nested_absmax[i/256] + offset.
func scalesGraph(w GraphWeight, blocks int) *Node {
	if w.NestedAbsmax == nil {
		if w.Absmax.DType() != dtypes.Float32 {
			panic(fmt.Sprintf("quant: absmax is %s without nested absmax (double quantization stores uint8 codes with nested_absmax)", w.Absmax.DType()))
		}
		return Reshape(w.Absmax, blocks)
	}
	nb := w.NestedAbsmax.Shape().Size()
	nbs := w.NestedBlocksize
	if nbs == 0 {
		nbs = NestedBlocksize
	}
	if (blocks+nbs-1)/nbs != nb {
		panic(fmt.Sprintf("quant: %d nested absmax values for %d scales in blocks of %d", nb, blocks, nbs))
	}
	q := padTo(Reshape(w.Absmax, blocks), nb*nbs)
	v := Gather(w.NestedQuantMap, InsertAxes(ConvertDType(q, dtypes.Int32), -1)) // [nb·nbs]
	v = Mul(Reshape(v, nb, nbs), InsertAxes(Reshape(w.NestedAbsmax, nb), -1))
	v = Reshape(v, nb*nbs)
	if nb*nbs != blocks {
		v = Slice(v, AxisRange(0, blocks))
	}
	return Add(v, Reshape(w.NestedOffset))
}

// padTo appends zeros to a rank-1 node up to size (the go backend has no Pad op).
func padTo(x *Node, size int) *Node {
	have := x.Shape().Size()
	if have == size {
		return x
	}
	return Concatenate([]*Node{x, Zeros(x.Graph(), shapes.Make(x.DType(), size-have))}, 0)
}

// nibblePairs is [512][1]: the high and low nibble of every byte value in turn, as Gather
// indices (kept at rank 2: GoMLX v0.26's shape inference rejects index tensors of a rank above
// the gathered operand's plus one).
func nibblePairs() [][]int32 {
	out := make([][]int32, 512)
	for b := 0; b < 256; b++ {
		out[2*b] = []int32{int32(b / 16)}
		out[2*b+1] = []int32{int32(b % 16)}
	}
	return out
}

// CastWeight brings a dequantized float32 weight to the compute dtype the way transformers does:
// dequantize_4bit returns the dtype the weight had when it was quantized (stored), then the
// Linear casts it to its input's dtype (compute).
func CastWeight(w *Node, stored, compute dtypes.DType) *Node {
	if stored != dtypes.Float32 && stored != compute {
		w = ConvertDType(w, stored)
	}
	if w.DType() != compute {
		w = ConvertDType(w, compute)
	}
	return w
}
