package bench

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/idefics2/idefics2/model"
)

// RandomWeights creates every parameter of m as a frozen variable with random values, drawn in
// Go directly into backend memory: norm scales 1, biases 0, everything else uniform with
// standard deviation std (HF's initializer_range is 0.02). Uniform rather than normal because
// speed does not depend on the distribution and 8.4 billion normals are slow to draw; the fill
// runs on all cores. On a backend with shared buffers the values are written in place; otherwise
// each tensor goes to the device and its host copy is freed at once, so host memory peaks at one
// tensor, not the whole model.
func RandomWeights(m *model.Model, be backends.Backend, std float64, seed uint64) error {
	packed := packedSet(m)
	for i, p := range m.Config.Params() {
		if packed[p.Name] {
			randomPacked(m, p, std, seed+uint64(i)*0x9e3779b97f4a7c15)
			continue
		}
		shape := shapes.Make(m.DType, p.Shape...)
		kind := fillRandom
		switch {
		case strings.HasSuffix(p.Name, ".bias"):
			kind = fillZero
		case strings.Contains(p.Name, "norm") && strings.HasSuffix(p.Name, ".weight"):
			kind = fillOne
		}
		fill := func(flat any) { fillFlat(flat, kind, std, seed+uint64(i)*0x9e3779b97f4a7c15) }
		var t *tensors.Tensor
		if be.HasSharedBuffers() {
			buf, flat, err := be.NewSharedBuffer(0, shape)
			if err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			fill(flat)
			if t, err = tensors.FromBuffer(be, buf); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
		} else {
			t = tensors.FromShape(shape)
			if err := t.MutableFlatData(fill); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			if err := t.MaterializeOnDevice(be, false, 0); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			t.FinalizeLocal()
		}
		scope, name := model.VariableScope(p.Name)
		if v := m.Ctx.GetVariableByScopeAndName(scope, name); v != nil {
			if err := v.SetValue(t); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			continue
		}
		m.Ctx.InAbsPath(scope).VariableWithValue(name, t).SetTrainable(false)
	}
	return nil
}

type fillKind int

const (
	fillRandom fillKind = iota
	fillZero
	fillOne
)

// fillFlat writes values into a []float32 or []bfloat16.BFloat16 with one goroutine per core,
// each running its own xorshift generator over its chunk.
func fillFlat(flat any, kind fillKind, std float64, seed uint64) {
	a := float32(std * math.Sqrt(3)) // uniform on [-a, a] has standard deviation std
	value := func(x uint64) float32 {
		switch kind {
		case fillZero:
			return 0
		case fillOne:
			return 1
		}
		return a * (float32(x>>40)/float32(1<<24)*2 - 1)
	}
	var n int
	var set func(i int, v float32)
	switch f := flat.(type) {
	case []float32:
		n, set = len(f), func(i int, v float32) { f[i] = v }
	case []bfloat16.BFloat16:
		n, set = len(f), func(i int, v float32) { f[i] = bfloat16.FromFloat32(v) }
	default:
		panic(fmt.Sprintf("bench: cannot fill %T", flat))
	}
	workers := runtime.GOMAXPROCS(0)
	if n < 1<<16 {
		workers = 1
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func(lo, hi int, s uint64) {
			defer wg.Done()
			x := s | 1
			for i := lo; i < hi; i++ {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				set(i, value(x))
			}
		}(lo, hi, seed+uint64(w)*0xbf58476d1ce4e5b9)
	}
	wg.Wait()
}
