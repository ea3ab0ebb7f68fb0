package model

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Generator decodes with a KV cache: one prefill graph over the (left padded, bucketed) prompt,
// which also runs the vision tower once, then one decode-step graph per new token. The loop, the
// logits processors and the stopping rules run on the host, as HF generate does them.
//
// Shapes are bucketed so that decoding compiles once per bucket, not per token or per prompt:
// the prompt is left padded to a multiple of PromptBucket and the KV cache is
// roundUp(prompt + max_new_tokens, CacheBucket) long. Compiles counts the graphs built.
//
// A Generator is safe for use by one goroutine at a time.
type Generator struct {
	Model   *Model
	Backend backends.Backend

	PromptBucket int // prompt lengths are left padded to a multiple of this (default 32)
	CacheBucket  int // KV cache lengths are a multiple of this (default 64)
	// PixelBucket, when > 0, pads image canvases (bottom/right, pixel mask 0) to a multiple of
	// this many patches per side, so that images of many sizes share a few prefill graphs.
	// Padding patches are masked in the vision tower and the perceiver, so the result is the same.
	PixelBucket int

	mu      sync.Mutex
	prefill *context.Exec
	step    *context.Exec
	place   *Exec // writes prefilled rows into a Running batch's caches
	resize  *Exec // changes a Running batch's rows and slots
	stats   GenerateStats
	donate  bool
}

// GenerateStats counts graphs built and time spent since the Generator was made.
type GenerateStats struct {
	PrefillCompiles, StepCompiles int           // graphs built (one per new shape bucket)
	Prefills, Steps               int           // graph executions
	PrefillTime, StepTime         time.Duration // wall time in prefill and decode-step executions (host transfers included)
	Tokens                        int           // tokens produced by decode steps, summed over rows (finished rows excluded)
}

// NewGenerator makes a generator for m on backend.
func NewGenerator(m *Model, backend backends.Backend) (*Generator, error) {
	g := &Generator{Model: m, Backend: backend, PromptBucket: 32, CacheBucket: 64, donate: true}
	var err error
	g.prefill, err = context.NewExecAny(backend, m.Ctx, func(ctx *context.Context, nodes []*Node) []*Node {
		g.stats.PrefillCompiles++
		in := GraphInputs{InputIDs: nodes[0], AttentionMask: nodes[1], PositionIDs: nodes[2]}
		if len(nodes) == 8 {
			in.Pixels, in.PatchMask, in.VisionPositionIDs, in.ImageRow = nodes[4], nodes[5], nodes[6], nodes[7]
		}
		logits, keys, values := m.Prefill(ctx, in, nodes[3])
		return append(append([]*Node{logits}, keys...), values...)
	})
	if err != nil {
		return nil, err
	}
	g.step, err = context.NewExecAny(backend, m.Ctx, func(ctx *context.Context, nodes []*Node) []*Node {
		g.stats.StepCompiles++
		n := m.Config.Text.NumHiddenLayers
		caches := nodes[4:]
		logits, keys, values := m.DecodeStep(ctx, nodes[0], nodes[1], nodes[2], nodes[3], caches[:n], caches[n:])
		return append(append([]*Node{logits}, keys...), values...)
	})
	if err != nil {
		return nil, err
	}
	g.prefill.SetMaxCache(256)
	g.step.SetMaxCache(256)
	return g, nil
}

// Stats returns the counters so far.
func (g *Generator) Stats() GenerateStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// Generation is the result of Generate.
type Generation struct {
	B, T  int // batch and prompt length of the inputs
	Steps int // generation steps taken: the longest row's new tokens
	// Sequences [B, T+Steps] is what HF generate returns: each input row as given, then its new
	// tokens, then PadTokenID once the row has stopped.
	Sequences []int64
	NewTokens [][]int32 // per row, the generated tokens up to and including its eos
	Stopped   []bool    // per row: it emitted an eos (false: it ran into max_new_tokens)
}

// TokenFunc sees each new token of a row as soon as it is chosen (eos included). Returning false
// retires the row at once, as if it had stopped, without marking it Stopped: a server uses it to
// stream tokens, to end a row on a stop string or its own token budget, and to drop the row of a
// client that went away.
type TokenFunc func(row int, tok int32) bool

// Generate continues every row of in (HF processor output: input ids, attention mask, images;
// left or right padded; Labels and PositionIDs are ignored) with c's decoding rules. Position ids
// are HF generate's: cumsum(attention_mask) − 1 on real tokens. The rows decode as one Running
// batch that admits them all at once.
func (g *Generator) Generate(in Inputs, c GenerationConfig) (*Generation, error) {
	run := g.NewRunning()
	defer run.Close()
	rows, err := run.Admit(in, c, nil)
	if err != nil {
		return nil, err
	}
	for run.Live() > 0 {
		if _, err := run.Step(); err != nil {
			return nil, err
		}
	}
	B, T := in.B, in.T
	out := &Generation{B: B, T: T, NewTokens: make([][]int32, B), Stopped: make([]bool, B)}
	for r, row := range rows {
		out.NewTokens[r], out.Stopped[r] = row.NewTokens, row.Stopped
		out.Steps = max(out.Steps, len(row.NewTokens))
	}
	out.Sequences = make([]int64, 0, B*(T+out.Steps))
	for _, row := range rows {
		for _, id := range row.hist {
			out.Sequences = append(out.Sequences, int64(id))
		}
		for range T + out.Steps - len(row.hist) {
			out.Sequences = append(out.Sequences, int64(c.PadTokenID)) // HF pads a row that stopped early
		}
	}
	return out, nil
}

// prefillInputs is a batch of prompts ready for the prefill graph: left aligned to a bucketed
// width tb (every row's last real token in the last column), with HF generate's position ids.
type prefillInputs struct {
	in      Inputs
	batch   *Batch
	tb      int
	am      []int64 // [B, tb] attention mask after alignment
	realLen []int
}

// prepare aligns in for the prefill: every row's last real token goes to the last column of a
// bucketed width, position ids are cumsum(attention_mask) − 1 on real tokens.
func (g *Generator) prepare(in Inputs, c GenerationConfig) (*prefillInputs, error) {
	B, T := in.B, in.T
	if B < 1 || T < 1 || len(in.InputIDs) != B*T {
		return nil, fmt.Errorf("generate: input_ids has %d values for B=%d, T=%d", len(in.InputIDs), B, T)
	}
	tb := roundUp(T, max(g.PromptBucket, 1))
	mask := in.AttentionMask
	pad := int64(c.PadTokenID)
	ids := make([]int64, B*tb)
	am := make([]int64, B*tb)
	realLen := make([]int, B)
	for r := 0; r < B; r++ {
		last := -1
		for t := 0; t < T; t++ {
			if mask == nil || mask[r*T+t] != 0 {
				last = t
				realLen[r]++
			}
		}
		if last < 0 {
			return nil, fmt.Errorf("generate: row %d has no real token (attention_mask all 0)", r)
		}
		for i := range tb {
			ids[r*tb+i] = pad
		}
		shift := tb - 1 - last
		for t := 0; t <= last; t++ {
			ids[r*tb+t+shift] = in.InputIDs[r*T+t]
			if mask == nil {
				am[r*tb+t+shift] = 1
			} else {
				am[r*tb+t+shift] = mask[r*T+t]
			}
		}
	}
	pos := make([]int64, B*tb)
	for r := 0; r < B; r++ {
		n := int64(0)
		for t := 0; t < tb; t++ {
			if am[r*tb+t] != 0 {
				pos[r*tb+t] = n
				n++
			}
		}
	}
	pin := in
	pin.T, pin.InputIDs, pin.AttentionMask, pin.PositionIDs, pin.Labels = tb, ids, am, pos, nil
	if g.PixelBucket > 0 && in.PixelValues != nil {
		pin = padPixels(pin, g.PixelBucket*g.Model.Config.Vision.PatchSize)
	}
	batch, err := NewBatch(g.Model.Config, pin)
	if err != nil {
		return nil, err
	}
	return &prefillInputs{in: in, batch: batch, tb: tb, am: am, realLen: realLen}, nil
}

// runPrefill runs the prefill graph with a KV cache of L slots: the caches of every layer
// (keys, then values) and the next-token logits of every row.
func (g *Generator) runPrefill(p *prefillInputs, L int) (keys, values []*tensors.Tensor, logits []float32, err error) {
	start := time.Now()
	batch, B, tb := p.batch, p.in.B, p.tb
	args := []any{
		tensors.FromFlatDataAndDimensions(batch.InputIDs, B, tb),
		tensors.FromFlatDataAndDimensions(batch.AttentionMask, B, tb),
		tensors.FromFlatDataAndDimensions(batch.PositionIDs, B, tb),
		tensors.FromFlatDataAndDimensions(make([]int32, L), L),
	}
	if batch.M > 0 {
		args = append(args,
			tensors.FromFlatDataAndDimensions(batch.Pixels, batch.M, batch.Channels, batch.Hp*batch.Patch, batch.Wp*batch.Patch),
			tensors.FromFlatDataAndDimensions(batch.PatchMask, batch.M, batch.Hp*batch.Wp),
			tensors.FromFlatDataAndDimensions(batch.VisionPositionIDs, batch.M, batch.Hp*batch.Wp),
			tensors.FromFlatDataAndDimensions(batch.ImageRow, B, tb))
	}
	outs, err := g.prefill.Exec(args...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate: prefill: %w", err)
	}
	logits = tensors.MustCopyFlatData[float32](outs[0])
	_ = outs[0].FinalizeAll()
	n := g.Model.Config.Text.NumHiddenLayers
	g.stats.Prefills++
	g.stats.PrefillTime += time.Since(start)
	return outs[1 : 1+n], outs[1+n:], logits, nil
}

// row is prompt b as a Running row with L cache slots: its history as HF's logits processors
// see input_ids (the input row, then the new tokens; leading padding skipped by the repetition
// penalty, as HF ≥ 4.50 passes it as prompt_ignore_length), its real slots and its random stream.
func (p *prefillInputs) row(b int, c GenerationConfig, L int) *Row {
	T, tb := p.in.T, p.tb
	row := &Row{c: c, realLen: p.realLen[b], next: tb, keys: make([]int32, L), eos: map[int32]bool{},
		hist: make([]int32, T, T+c.MaxNewTokens), rng: rand.New(rand.NewPCG(c.Seed, 0x1def1c52+uint64(b)))}
	for t := 0; t < T; t++ {
		row.hist[t] = int32(p.in.InputIDs[b*T+t])
	}
	if mask := p.in.AttentionMask; mask != nil {
		for row.lead < T && mask[b*T+row.lead] == 0 {
			row.lead++
		}
	}
	for t := 0; t < tb; t++ {
		row.keys[t] = int32(p.am[b*tb+t])
	}
	for _, e := range c.EOSTokenIDs {
		row.eos[int32(e)] = true
	}
	return row
}

// cacheArg passes a cache tensor to the next step, donating its device buffer when the backend
// allows it, so that the step may update the cache in place.
func (g *Generator) cacheArg(t *tensors.Tensor) any {
	if g.donate {
		if d, err := DonateTensorBuffer(t, g.Backend, 0); err == nil {
			return d
		}
		g.donate = false
	}
	return t
}

// padPixels pads the image canvas of in to multiples of side pixels (bottom/right, mask 0).
func padPixels(in Inputs, side int) Inputs {
	H, W := roundUp(in.H, side), roundUp(in.W, side)
	if H == in.H && W == in.W {
		return in
	}
	C := len(in.PixelValues) / (in.B * in.N * in.H * in.W)
	pix := make([]float32, in.B*in.N*C*H*W)
	pm := make([]int64, in.B*in.N*H*W)
	for img := 0; img < in.B*in.N; img++ {
		for ch := 0; ch < C; ch++ {
			for y := 0; y < in.H; y++ {
				src := in.PixelValues[((img*C+ch)*in.H+y)*in.W:][:in.W]
				copy(pix[((img*C+ch)*H+y)*W:], src)
			}
		}
		for y := 0; y < in.H; y++ {
			for x := 0; x < in.W; x++ {
				v := int64(1)
				if in.PixelAttentionMask != nil {
					v = in.PixelAttentionMask[(img*in.H+y)*in.W+x]
				}
				pm[(img*H+y)*W+x] = v
			}
		}
	}
	in.H, in.W, in.PixelValues, in.PixelAttentionMask = H, W, pix, pm
	return in
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
