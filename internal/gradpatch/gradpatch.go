// Package gradpatch replaces gradient rules that GoMLX v0.26.0 gets wrong or cannot build on the
// pure Go backend ("go", a.k.a. SimpleGo), from our own code, through the exported table
// graph.VJPRegistration.
//
// Why it exists:
//
//   - DotGeneral / Dot: the stock rules build the gradient of a matmul as a broadcast multiply
//     followed by ReduceSum. For y = x·W with x [M,K] and W [K,N] this materialises an [M,K,N]
//     tensor, for dx as well as dW. On the Go backend a [256×1024]·[1024×1024] forward+backward
//     takes seconds and gigabytes; at Mistral sizes the intermediate is 32 GiB, so training is
//     impossible. Upstream fixed it in v0.28, which our module proxy does not serve, and the
//     version is pinned. Here both gradients are emitted as one DotGeneral each (the GEMM form)
//     plus at most one transpose.
//   - Slice: the stock rule zero-fills with Pad, which the Go backend does not implement, so any
//     graph that differentiates through Slice/SliceAxis (RoPE's rotate_half, logits[:, :-1], ...)
//     fails to build. Here the zeros are placed with Concatenate (and Reshape for strides).
//   - ReduceWindow (sum): the stock rule also uses Pad, so CumSum had no gradient on the Go
//     backend. Here it is a ReduceWindow over the (base-dilated) adjoint instead.
//   - Rsqrt, Expm1, Clamp (graph.Clip), Identity: no rule at all in v0.26 on any backend.
//   - Floor, Ceil, Round, IsFinite, IsNaN, ArgMinMax: no rule either, so e.g.
//     ConvertDType(IsFinite(x)) * x or a product with Floor(x) made Gradient panic. They are
//     piecewise constant: their gradient is zero. (Comparisons and Sign already stop the gradient
//     in v0.26 and are left alone.)
//
// The axes of DotGeneral, Slice and ReduceWindow live in unexported structs and v0.26 has no
// accessor for them, so they are read with read-only reflection (see fields.go). That depends on
// the field names of gomlx v0.26.0, which is why go.mod pins it; a mismatch panics with a message
// naming the field rather than computing a wrong gradient.
//
// Rules fall back to the stock rule for configurations they do not cover (ReduceWindow max/min,
// window dilations), so installing never removes a gradient that used to build.
//
// Call Install once before building any graph (from init or TestMain); it is idempotent and safe
// to call from many packages. The table is a plain Go map read while graphs are differentiated,
// so Install and Uninstall must not run concurrently with graph building.
package gradpatch

import (
	"sort"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
)

// rules is the replacement table. Keys are the node types we override. It is filled in init
// because the rules refer back to the saved stock table (a package-level initializer would be an
// initialization cycle).
var rules map[graph.NodeType]graph.VJP

func init() {
	rules = map[graph.NodeType]graph.VJP{
		graph.NodeTypeDotGeneral:   single(dotGeneralVJP),
		graph.NodeTypeDot:          single(dotVJP),
		graph.NodeTypeSlice:        single(sliceVJP),
		graph.NodeTypeReduceWindow: single(reduceWindowVJP),
		graph.NodeTypeRsqrt:        single(rsqrtVJP),
		graph.NodeTypeExpm1:        single(expm1VJP),
		graph.NodeTypeClamp:        single(clampVJP),
		graph.NodeTypeIdentity:     single(identityVJP),

		// Piecewise-constant ops: zero gradient (nil means "no gradient" to graph.Gradient, which
		// creates no nodes at all for it).
		graph.NodeTypeIsFinite:  single(zeroVJP),
		graph.NodeTypeIsNaN:     single(zeroVJP),
		graph.NodeTypeFloor:     single(zeroVJP),
		graph.NodeTypeCeil:      single(zeroVJP),
		graph.NodeTypeRound:     single(zeroVJP),
		graph.NodeTypeArgMinMax: single(zeroVJP),
	}
}

var (
	mu        sync.Mutex
	installed bool
	// stock holds the table entries we replaced (nil where there was none), so rules can fall
	// back to them and Uninstall can restore them.
	stock map[graph.NodeType]graph.VJP
)

// Install registers the replacement gradient rules in graph.VJPRegistration. Calling it again is a
// no-op. Call it before building graphs.
func Install() {
	mu.Lock()
	defer mu.Unlock()
	if installed {
		return
	}
	saveStockLocked()
	for t, fn := range rules {
		graph.VJPRegistration[t] = fn
	}
	installed = true
}

// Uninstall restores the stock GoMLX rules that Install replaced. It exists so benchmarks and
// tests can compare against the stock rules in one process; production code has no reason to
// call it.
func Uninstall() {
	mu.Lock()
	defer mu.Unlock()
	if !installed {
		return
	}
	for t := range rules {
		if fn := stock[t]; fn != nil {
			graph.VJPRegistration[t] = fn
		} else {
			delete(graph.VJPRegistration, t)
		}
	}
	installed = false
}

// Installed reports whether the replacement rules are currently registered.
func Installed() bool {
	mu.Lock()
	defer mu.Unlock()
	return installed
}

// Patched lists the node types whose gradient rule Install replaces or adds, sorted.
func Patched() []graph.NodeType {
	out := make([]graph.NodeType, 0, len(rules))
	for t := range rules {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// saveStockLocked records the stock rules the first time only: after an Install/Uninstall cycle
// the table holds the stock rules again, but recording once avoids ever saving our own rules as
// "stock" if someone else re-registered them.
func saveStockLocked() {
	if stock != nil {
		return
	}
	stock = make(map[graph.NodeType]graph.VJP, len(rules))
	for t := range rules {
		stock[t] = graph.VJPRegistration[t]
	}
}

// stockRule returns the rule GoMLX ships for t, or nil. Rules call it to fall back on
// configurations they do not handle themselves.
func stockRule(t graph.NodeType) graph.VJP {
	mu.Lock()
	defer mu.Unlock()
	if stock == nil {
		saveStockLocked()
	}
	return stock[t]
}
