package data

import (
	"errors"
	"fmt"
	"slices"
)

// PadSide is where padding tokens go.
type PadSide int

const (
	// PadRight for training: real tokens start at position 0.
	PadRight PadSide = iota
	// PadLeft for batched generation: every row's last real token is at T-1, so new tokens
	// append in step (the Idefics2 tokenizer's default).
	PadLeft
)

// CollateOptions configures batching. Buckets keep the number of distinct tensor shapes small,
// because XLA compiles once per shape: a dimension is padded up to the smallest bucket that
// holds it, and left exact when it exceeds every bucket.
type CollateOptions struct {
	PadSide    PadSide
	SeqBuckets []int // sequence lengths, e.g. 512, 1024, 2048
	// ImageBuckets apply to image height and width separately, e.g. 378, 490, 616, 980.
	ImageBuckets []int
	// ImageCountBuckets apply to the number of image slots per sample (crops included).
	ImageCountBuckets []int
}

// Batch holds model inputs as flat row-major slices, in HF's dtypes and the field layout of
// model.Inputs, so a trainer hands them over without conversion.
type Batch struct {
	B, T int
	// InputIDs, AttentionMask and Labels are [B,T]; Labels is nil when no sample has labels.
	InputIDs, AttentionMask, Labels []int64
	// N image slots per sample, each 3×H×W. PixelValues is [B,N,3,H,W] and PixelAttentionMask
	// [B,N,H,W] (1 on real pixels). N is 0 for a text-only batch, and the slices are empty.
	N, H, W            int
	PixelValues        []float32
	PixelAttentionMask []int64
	Waste              Waste
}

// Waste measures what padding costs in a batch (or, summed, in a run).
type Waste struct {
	RealTokens, PaddedTokens int64 // PaddedTokens counts all B·T positions
	RealPixels, PaddedPixels int64 // over all B·N·H·W image positions
}

// Add accumulates another batch's waste.
func (w *Waste) Add(o Waste) {
	w.RealTokens += o.RealTokens
	w.PaddedTokens += o.PaddedTokens
	w.RealPixels += o.RealPixels
	w.PaddedPixels += o.PaddedPixels
}

// TokenFraction is the share of token positions that are padding.
func (w Waste) TokenFraction() float64 { return frac(w.PaddedTokens-w.RealTokens, w.PaddedTokens) }

// PixelFraction is the share of pixel positions that are padding (empty slots included).
func (w Waste) PixelFraction() float64 { return frac(w.PaddedPixels-w.RealPixels, w.PaddedPixels) }

func (w Waste) String() string {
	return fmt.Sprintf("padding: %.1f%% of %d token positions, %.1f%% of %d pixel positions",
		100*w.TokenFraction(), w.PaddedTokens, 100*w.PixelFraction(), w.PaddedPixels)
}

func frac(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Bucket returns the smallest bucket ≥ n, or n itself when none is (or there are none).
func Bucket(n int, buckets []int) int {
	best := -1
	for _, b := range buckets {
		if b >= n && (best < 0 || b < best) {
			best = b
		}
	}
	if best < 0 {
		return n
	}
	return best
}

// Collate pads samples into one batch. With no buckets and PadLeft it reproduces HF's
// processor(..., padding=True) output exactly: pad id, attention mask, pixel padding with
// 0.0 at the bottom and right, all-zero image slots for samples with fewer images.
func (p *Processor) Collate(samples []*Sample, opt CollateOptions) (*Batch, error) {
	return p.CollateInto(nil, samples, opt)
}

// CollateInto is Collate reusing dst's slices when they are large enough, which saves
// allocating and zeroing tens of megabytes per batch of large images. The returned batch is
// dst (or a new one when dst is nil); its previous contents are overwritten.
func (p *Processor) CollateInto(dst *Batch, samples []*Sample, opt CollateOptions) (*Batch, error) {
	if len(samples) == 0 {
		return nil, errors.New("collate: no samples")
	}
	bt := dst
	if bt == nil {
		bt = &Batch{}
	}
	*bt = Batch{B: len(samples), InputIDs: bt.InputIDs[:0], AttentionMask: bt.AttentionMask[:0], Labels: bt.Labels[:0],
		PixelValues: bt.PixelValues[:0], PixelAttentionMask: bt.PixelAttentionMask[:0]}
	withLabels := false
	for _, s := range samples {
		bt.T = max(bt.T, len(s.InputIDs))
		bt.N = max(bt.N, len(s.Images))
		withLabels = withLabels || s.Labels != nil
		for _, im := range s.Images {
			bt.H, bt.W = max(bt.H, im.H), max(bt.W, im.W)
		}
	}
	bt.T = Bucket(bt.T, opt.SeqBuckets)
	if bt.N > 0 {
		bt.N = Bucket(bt.N, opt.ImageCountBuckets)
		bt.H = Bucket(bt.H, opt.ImageBuckets)
		bt.W = Bucket(bt.W, opt.ImageBuckets)
	}
	p.fillTokens(bt, samples, opt.PadSide, withLabels)
	p.fillPixels(bt, samples)
	return bt, nil
}

// reuse returns v with length n, reusing its array when it can; the contents are undefined.
func reuse[T any](v []T, n int) []T {
	if cap(v) >= n {
		return v[:n]
	}
	return make([]T, n)
}

func (p *Processor) fillTokens(bt *Batch, samples []*Sample, side PadSide, withLabels bool) {
	B, T := bt.B, bt.T
	bt.InputIDs = reuse(bt.InputIDs, B*T)
	bt.AttentionMask = reuse(bt.AttentionMask, B*T)
	if withLabels {
		bt.Labels = reuse(bt.Labels, B*T)
	} else {
		bt.Labels = nil
	}
	pad := int64(p.Tokenizer.Pad)
	for b, s := range samples {
		row := bt.InputIDs[b*T : (b+1)*T]
		mask := bt.AttentionMask[b*T : (b+1)*T]
		off := 0
		if side == PadLeft {
			off = T - len(s.InputIDs)
		}
		for i := range row {
			row[i], mask[i] = pad, 0
		}
		for i, id := range s.InputIDs {
			row[off+i], mask[off+i] = int64(id), 1
		}
		if withLabels {
			lab := bt.Labels[b*T : (b+1)*T]
			for i := range lab {
				lab[i] = IgnoreIndex
			}
			for i, l := range s.Labels { // a sample without labels stays all IgnoreIndex
				lab[off+i] = int64(l)
			}
		}
		bt.Waste.RealTokens += int64(len(s.InputIDs))
	}
	bt.Waste.PaddedTokens = int64(B * T)
}

func (p *Processor) fillPixels(bt *Batch, samples []*Sample) {
	if bt.N == 0 {
		bt.PixelValues, bt.PixelAttentionMask = nil, nil
		return
	}
	B, N, H, W := bt.B, bt.N, bt.H, bt.W
	bt.PixelValues = reuse(bt.PixelValues, B*N*3*H*W)
	bt.PixelAttentionMask = reuse(bt.PixelAttentionMask, B*N*H*W)
	lut := p.lut()
	ones := make([]int64, W)
	for i := range ones {
		ones[i] = 1
	}
	for b, s := range samples {
		for n := 0; n < N; n++ {
			slot := b*N + n
			pix := bt.PixelValues[slot*3*H*W : (slot+1)*3*H*W]
			mask := bt.PixelAttentionMask[slot*H*W : (slot+1)*H*W]
			if n >= len(s.Images) {
				clear(pix)
				clear(mask)
				continue
			}
			im := s.Images[n]
			lut.writeCHW(pix, im, H, W)
			for y := 0; y < H; y++ {
				row := mask[y*W : (y+1)*W]
				if y < im.H {
					copy(row, ones[:im.W])
					clear(row[im.W:])
				} else {
					clear(row)
				}
			}
			bt.Waste.RealPixels += int64(im.H * im.W)
		}
	}
	bt.Waste.PaddedPixels = int64(B * N * H * W)
}

func (p *Processor) lut() *PixelLUT {
	p.lutOnce.Do(func() { p.pixelLUT = NewPixelLUT(p.Images) })
	return p.pixelLUT
}

// SortByLength orders sample indices by sequence length so that neighbours batch with little
// padding; callers shuffle the resulting batches, not the samples, to keep that benefit.
func SortByLength(samples []*Sample) []int {
	idx := make([]int, len(samples))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return len(samples[a].InputIDs) - len(samples[b].InputIDs) })
	return idx
}
