package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/nlpodyssey/safetensors"
)

// A NaN or infinite weight does not fail anywhere downstream: the logits become NaN, greedy
// decoding picks token 0 or stops at once, and a merge writes a NaN model, all with exit 0. So
// every command that takes weights from disk for inference or merging checks them first. The
// check reads the exponent bits only (all ones is NaN or ±Inf in every IEEE format), which
// keeps it at memory speed.

// NonFiniteAt returns the index of the first NaN or ±Inf element of a floating point view and
// its value, or -1 when every element is finite (or the view is not floating point).
func NonFiniteAt(v safetensors.TensorView) (int, float64) {
	d := v.Data()
	switch v.DType() {
	case safetensors.F32:
		for i := 0; i+4 <= len(d); i += 4 {
			if b := binary.LittleEndian.Uint32(d[i:]); b&0x7f800000 == 0x7f800000 {
				return i / 4, float64(math.Float32frombits(b))
			}
		}
	case safetensors.BF16:
		for i := 0; i+2 <= len(d); i += 2 {
			if b := binary.LittleEndian.Uint16(d[i:]); b&0x7f80 == 0x7f80 {
				return i / 2, float64(math.Float32frombits(uint32(b) << 16))
			}
		}
	case safetensors.F16:
		for i := 0; i+2 <= len(d); i += 2 {
			if b := binary.LittleEndian.Uint16(d[i:]); b&0x7c00 == 0x7c00 {
				if b&0x3ff != 0 {
					return i / 2, math.NaN()
				}
				return i / 2, math.Inf(1 - 2*int(b>>15))
			}
		}
	case safetensors.F64:
		for i := 0; i+8 <= len(d); i += 8 {
			if b := binary.LittleEndian.Uint64(d[i:]); b&0x7ff0000000000000 == 0x7ff0000000000000 {
				return i / 8, math.Float64frombits(b)
			}
		}
	}
	return -1, 0
}

// CheckFiniteView is NonFiniteAt as an error naming the tensor, its file and what to do.
func CheckFiniteView(name, file string, v safetensors.TensorView) error {
	if i, x := NonFiniteAt(v); i >= 0 {
		return fmt.Errorf("%s: tensor %s holds %v at element %d: the weights are damaged or come from a run that diverged; use an earlier checkpoint or adapter", file, name, x, i)
	}
	return nil
}

// CheckFinite checks every tensor of the checkpoint, several at a time, and reports the first
// bad one in name order. Each tensor's pages are released once read (see Release).
func (ck *Checkpoint) CheckFinite() error {
	names := ck.Names()
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r := ck.tensors[names[i]]
				errs[i] = CheckFiniteView(names[i], r.file, r.view)
				ck.Release(names[i])
			}
		}()
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
