package model

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Running is a decode batch that rows join and leave between steps (continuous batching): each
// row is one sequence with its own decoding rules, token budget and random stream, at its own
// point in its own KV-cache row. Admit prefills new rows, places their caches into free rows of
// the running caches and chooses their first tokens; Step runs one decode step over the live
// rows, then chooses every row's next token on the host and retires the rows that are done.
//
// The running caches are [C, L, Hkv, d] per layer. C (rows) and L (slots) change only through
// a resize graph: they grow when an admission needs more, shrink when few rows are left, and the
// caches are freed when the last row leaves. With Buckets, C and L are rounded to powers of two
// (times CacheBucket for L), so a server compiles a handful of decode-step graphs whatever
// arrives; without it they are exactly what the first admission needs, which is what Generate
// uses, so that a plain batch decodes with the same graphs as before.
//
// A row's computation does not depend on the other rows, so a greedy answer is the same alone or
// in any batch up to the floating-point order of the kernels at another batch size (XLA CPU and
// the pure Go backend give identical tokens on the test models). A Running, like its
// Generator, is for one goroutine at a time; it holds the Generator's lock only inside Admit and
// Step.
type Running struct {
	g       *Generator
	Buckets bool // round rows and slots to powers of two (see above)

	rows   []*Row // len = C; nil = a free row
	L      int
	caches []*tensors.Tensor // keys of every layer, then values
}

// Row is one sequence of a Running batch.
type Row struct {
	// NewTokens are the tokens chosen so far (an eos included); Stopped: it emitted an eos.
	NewTokens []int32
	Stopped   bool
	// Done: the row has left the batch (eos, its budget, or its TokenFunc said stop).
	Done bool

	c       GenerationConfig
	each    func(tok int32) bool
	rng     *rand.Rand
	eos     map[int32]bool
	hist    []int32 // the input row as given, then the new tokens (HF's input_ids)
	lead    int     // leading padding columns of hist, which the repetition penalty skips
	realLen int     // real prompt tokens: the next token's position is realLen + len(NewTokens) − 1
	next    int     // the cache slot the next fed token takes
	keys    []int32 // [L] 1 = a slot this row attends to (its real prompt tokens and fed tokens)
}

// NewRunning starts an empty running batch on g.
func (g *Generator) NewRunning() *Running { return &Running{g: g} }

// Live is the number of rows still decoding.
func (r *Running) Live() int {
	n := 0
	for _, row := range r.rows {
		if row != nil {
			n++
		}
	}
	return n
}

// Close frees the caches; the rows still in the batch are left as they are.
func (r *Running) Close() {
	for _, t := range r.caches {
		_ = t.FinalizeAll()
	}
	r.caches, r.rows, r.L = nil, nil, 0
}

// Admit prefills the rows of in (HF processor output, left or right padded; Labels and
// PositionIDs are ignored) with c's decoding rules, row i calling each(i, tok) for every token
// it is given, and adds them to the batch. Their first tokens are chosen at once, from the
// prefill (a server streams them before the next decode step); the next Step feeds them. Row i
// samples from its own stream, seeded by c.Seed and i, so a sampled row gives the same tokens
// alone as in any batch.
func (r *Running) Admit(in Inputs, c GenerationConfig, each TokenFunc) ([]*Row, error) {
	g := r.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p, err := g.prepare(in, c)
	if err != nil {
		return nil, err
	}
	B := in.B
	slots := r.slots(p.tb + c.MaxNewTokens)
	next := r.After(r.Size(), B, in.T, c.MaxNewTokens)
	if err := r.resize(next.Rows, next.Slots); err != nil {
		return nil, err
	}
	// The prefill's cache has the slots the new rows need, not the batch's: its shapes, and so
	// its compiles, do not depend on what else is decoding. place pads it to the batch's.
	keys, values, logits, err := g.runPrefill(p, slots)
	if err != nil {
		return nil, err
	}
	fresh := append(keys, values...)
	// The rows they take: the free ones, in order.
	dst := make([]int32, len(r.rows))
	for i := range dst {
		dst[i] = -1
	}
	rows := make([]*Row, B)
	at := make([]int, B)
	for b, slot := 0, 0; b < B; b++ {
		for r.rows[slot] != nil {
			slot++
		}
		row := p.row(b, c, r.L)
		if each != nil {
			b := b
			row.each = func(tok int32) bool { return each(b, tok) }
		}
		rows[b], r.rows[slot], dst[slot], at[b] = row, row, int32(b), slot
	}
	if r.caches == nil && B == len(r.rows) && slots == r.L {
		r.caches = fresh // the whole batch: the prefill's caches are the running caches
	} else if err := r.place(fresh, dst); err != nil {
		return nil, err
	}
	vocab := len(logits) / B
	for b, row := range rows {
		r.choose(at[b], row, logits[b*vocab:(b+1)*vocab])
	}
	return rows, nil
}

// choose picks row's next token from its logits and gives it to the row's TokenFunc; a row that
// is done (eos, its budget, or its TokenFunc said stop) leaves batch row i.
func (r *Running) choose(i int, row *Row, logits []float32) {
	tok := nextToken(logits, row.hist, row.lead, &row.c, row.rng)
	row.NewTokens = append(row.NewTokens, tok)
	row.hist = append(row.hist, tok)
	row.Stopped = row.eos[tok]
	keep := row.each == nil || row.each(tok)
	if row.Stopped || !keep || len(row.NewTokens) >= row.c.MaxNewTokens {
		row.Done, r.rows[i] = true, nil
	}
}

// Drop retires row at once (say, its client left); its cache row is free for the next admission.
func (r *Running) Drop(row *Row) {
	for i, x := range r.rows {
		if x == row {
			r.rows[i], row.Done = nil, true
		}
	}
}

// Size is what a running batch holds: its rows (live or free), its cache slots, its live rows.
type Size struct{ Rows, Slots, Live int }

// Size is the batch's size now.
func (r *Running) Size() Size { return Size{Rows: len(r.rows), Slots: r.L, Live: r.Live()} }

// After is the size a batch of size s has once it admits rows more rows of prompt length T
// (before bucketing) and maxNew new tokens each: what Admit resizes to. A server plans its
// admissions with it. The rows already there fit in s.Slots: a batch never gives up slots a
// live row needs.
func (r *Running) After(s Size, rows, T, maxNew int) Size {
	live := s.Live + rows
	C := max(s.Rows, live)
	if r.Buckets {
		C = max(s.Rows, pow2Bucket(live, 1))
	}
	return Size{Rows: C, Slots: max(s.Slots, r.slots(roundUp(T, max(r.g.PromptBucket, 1))+maxNew)), Live: live}
}

// CacheBytes is the device memory of the KV caches of a batch of size s: keys and values of
// every layer, [rows, slots, kv heads, head dim] in the compute dtype.
func (r *Running) CacheBytes(s Size) int64 {
	tc := r.g.Model.Config.Text
	return int64(s.Rows) * int64(s.Slots) * int64(2*tc.NumHiddenLayers*tc.NumKeyValueHeads*tc.HeadDim) * int64(r.g.Model.DType.Size())
}

// Step feeds every row its last chosen token through one decode step, then chooses each row's
// next token and retires the rows that are done. It returns the number of rows still decoding.
func (r *Running) Step() (int, error) {
	g := r.g
	g.mu.Lock()
	defer g.mu.Unlock()
	C, L := len(r.rows), r.L
	ids := make([]int32, C)
	pos := make([]int32, C)
	cur := make([]int32, C)
	allowed := make([]int32, C*L)
	window := g.Model.Config.Text.Window()
	alive := 0
	for i, row := range r.rows {
		if row == nil {
			allowed[i*L] = 1 // a free row attends to slot 0 only, so that its softmax stays finite
			continue
		}
		alive++
		// The token takes slot next, at position realLen + (new tokens − 1).
		ids[i], cur[i] = row.NewTokens[len(row.NewTokens)-1], int32(row.next)
		pos[i] = int32(row.realLen + len(row.NewTokens) - 1)
		row.keys[row.next] = 1
		for j := 0; j < L; j++ {
			ok := row.keys[j] != 0 && j <= row.next && (window <= 0 || row.next-j < window)
			allowed[i*L+j] = b2i(ok)
		}
		row.next++
	}
	if alive == 0 {
		r.Close()
		return 0, nil
	}
	start := time.Now()
	args := make([]any, 0, 4+len(r.caches))
	args = append(args,
		tensors.FromFlatDataAndDimensions(ids, C, 1),
		tensors.FromFlatDataAndDimensions(pos, C, 1),
		tensors.FromFlatDataAndDimensions(allowed, C, L),
		tensors.FromFlatDataAndDimensions(cur, C))
	for _, t := range r.caches {
		args = append(args, g.cacheArg(t))
	}
	outs, err := g.step.Exec(args...)
	if err != nil {
		r.fail()
		return 0, fmt.Errorf("generate: decode step: %w", err)
	}
	if !g.donate {
		for _, t := range r.caches {
			_ = t.FinalizeAll()
		}
	}
	logits := tensors.MustCopyFlatData[float32](outs[0])
	_ = outs[0].FinalizeAll()
	r.caches = outs[1:]
	g.stats.Steps++
	g.stats.Tokens += alive
	g.stats.StepTime += time.Since(start)
	vocab := len(logits) / C
	for i, row := range r.rows {
		if row != nil {
			r.choose(i, row, logits[i*vocab:(i+1)*vocab])
		}
	}
	alive = r.Live()
	if alive == 0 {
		r.Close()
		return 0, nil
	}
	if r.Buckets && alive*4 <= C && C > 1 {
		// Few rows left: decode them in a smaller batch.
		if err := r.resize(pow2Bucket(alive, 1), L); err != nil {
			return 0, err
		}
	}
	return alive, nil
}

// fail ends every row after a failed graph execution and frees the caches.
func (r *Running) fail() {
	for _, row := range r.rows {
		if row != nil {
			row.Done = true
		}
	}
	r.Close()
}

// resize gives the running caches C rows and L slots, keeping the rows in the batch (in order,
// first) and their slots. An empty batch only records the sizes: its caches come from the next
// prefill.
func (r *Running) resize(C, L int) error {
	if C == len(r.rows) && L == r.L {
		return nil
	}
	var kept []*Row
	src := make([]int32, C)
	for i, row := range r.rows {
		if row != nil {
			src[len(kept)] = int32(i)
			kept = append(kept, row)
		}
	}
	if len(kept) > C {
		return fmt.Errorf("generate: cannot fit %d rows in %d", len(kept), C)
	}
	for _, row := range kept {
		if row.next > L {
			return fmt.Errorf("generate: a row uses %d cache slots, more than %d", row.next, L)
		}
		row.keys = resizeInt32(row.keys, L)
	}
	rows := make([]*Row, C)
	copy(rows, kept)
	if r.caches == nil || len(kept) == 0 {
		r.Close()
		r.rows, r.L = rows, L
		return nil
	}
	g := r.g
	if g.resize == nil {
		var err error
		if g.resize, err = NewExec(g.Backend, resizeCaches); err != nil {
			return err
		}
		g.resize.SetMaxCache(64)
	}
	args := []any{tensors.FromFlatDataAndDimensions(src, C), tensors.FromShape(shapes.Make(dtypes.Int32, L))}
	for _, t := range r.caches {
		args = append(args, g.cacheArg(t))
	}
	outs, err := g.resize.Exec(args...)
	if err != nil {
		r.fail()
		return fmt.Errorf("generate: resizing the KV cache to %d rows × %d slots: %w", C, L, err)
	}
	if !g.donate {
		for _, t := range r.caches {
			_ = t.FinalizeAll()
		}
	}
	r.caches, r.rows, r.L = outs, rows, L
	return nil
}

// place writes fresh caches [B, L', …] into the running rows: row i takes fresh row dst[i]
// (zero-padded to the batch's L slots), or keeps its own where dst[i] < 0. Without running
// caches yet, the other rows are zeros.
func (r *Running) place(fresh []*tensors.Tensor, dst []int32) error {
	g := r.g
	if g.place == nil {
		var err error
		if g.place, err = NewExec(g.Backend, placeRows(len(fresh))); err != nil {
			return err
		}
		g.place.SetMaxCache(64)
	}
	args := []any{tensors.FromFlatDataAndDimensions(dst, len(dst)), tensors.FromShape(shapes.Make(dtypes.Int32, r.L))}
	for _, t := range fresh {
		args = append(args, t)
	}
	for _, t := range r.caches {
		args = append(args, g.cacheArg(t))
	}
	outs, err := g.place.Exec(args...)
	for _, t := range fresh {
		_ = t.FinalizeAll()
	}
	if err != nil {
		r.fail()
		return fmt.Errorf("generate: placing new rows in the KV cache: %w", err)
	}
	if !g.donate {
		for _, t := range r.caches {
			_ = t.FinalizeAll()
		}
	}
	r.caches = outs
	return nil
}

// placeRows is the graph of place for n cache tensors: nodes are dst [C], slots [L] (only its
// length matters), n fresh caches [B, L' ≤ L, …], then the n running caches [C, L, …] or none.
func placeRows(n int) func(nodes []*Node) []*Node {
	return func(nodes []*Node) []*Node {
		dst, slots := nodes[0], nodes[1]
		C, L := dst.Shape().Dim(0), slots.Shape().Dim(0)
		take := GreaterOrEqual(dst, ZerosLike(dst))
		idx := Reshape(Max(dst, ZerosLike(dst)), C, 1)
		out := make([]*Node, n)
		for i := range n {
			fresh := nodes[2+i]
			if pad := L - fresh.Shape().Dim(1); pad > 0 {
				dims := fresh.Shape().Clone().Dimensions
				dims[1] = pad
				fresh = Concatenate([]*Node{fresh, Zeros(fresh.Graph(), shapes.Make(fresh.DType(), dims...))}, 1)
			}
			rows := Gather(fresh, idx) // [C, L, Hkv, d]
			var old *Node
			if len(nodes) > 2+n {
				old = nodes[2+n+i]
			} else {
				old = ZerosLike(rows)
			}
			mask := BroadcastToDims(Reshape(take, C, 1, 1, 1), old.Shape().Dimensions...)
			out[i] = Where(mask, rows, old)
		}
		return out
	}
}

// resizeCaches is the graph of resize: nodes are src [C'] (the old row each new row copies),
// slots [L'] (only its length matters), then the caches [C, L, …]. Slots beyond the old length
// are zero; rows and slots past what src and L' keep are dropped.
func resizeCaches(nodes []*Node) []*Node {
	src, slots := nodes[0], nodes[1]
	C, L := src.Shape().Dim(0), slots.Shape().Dim(0)
	idx := Reshape(src, C, 1)
	out := make([]*Node, len(nodes)-2)
	for i, cache := range nodes[2:] {
		rows := Gather(cache, idx)
		switch old := cache.Shape().Dim(1); {
		case L > old:
			dims := rows.Shape().Clone().Dimensions
			dims[1] = L - old
			rows = Concatenate([]*Node{rows, Zeros(cache.Graph(), shapes.Make(cache.DType(), dims...))}, 1)
		case L < old:
			rows = SliceAxis(rows, 1, AxisRange(0, L))
		}
		out[i] = rows
	}
	return out
}

// slots is the cache length that holds n slots: a multiple of CacheBucket, or with Buckets a
// power of two times it.
func (r *Running) slots(n int) int {
	unit := max(r.g.CacheBucket, 1)
	if r.Buckets {
		return pow2Bucket(n, unit)
	}
	return roundUp(n, unit)
}

// pow2Bucket is the smallest unit·2^k at or above n.
func pow2Bucket(n, unit int) int {
	k := (n + unit - 1) / unit
	if k <= 1 {
		return unit
	}
	return unit << bits.Len(uint(k-1))
}

func resizeInt32(v []int32, n int) []int32 {
	if len(v) >= n {
		return v[:n]
	}
	return append(v, make([]int32, n-len(v))...)
}
