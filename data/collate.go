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

// Batch holds model inputs as flat row-major slices.
type Batch struct {
	B, T int
	// InputIDs, AttentionMask and Labels are [B,T]; Labels is nil when no sample has labels.
	InputIDs, AttentionMask, Labels []int32
	// N image slots per sample, each 3×H×W. PixelValues is [B,N,3,H,W] and PixelAttentionMask
	// [B,N,H,W] (1 on real pixels). N is 0 for a text-only batch, and the slices are empty.
	N, H, W            int
	PixelValues        []float32
	PixelAttentionMask []int32
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
	if len(samples) == 0 {
		return nil, errors.New("collate: no samples")
	}
	bt := &Batch{B: len(samples)}
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

func (p *Processor) fillTokens(bt *Batch, samples []*Sample, side PadSide, withLabels bool) {
	B, T := bt.B, bt.T
	bt.InputIDs = make([]int32, B*T)
	bt.AttentionMask = make([]int32, B*T)
	if withLabels {
		bt.Labels = make([]int32, B*T)
	}
	pad := p.Tokenizer.Pad
	for b, s := range samples {
		row := bt.InputIDs[b*T : (b+1)*T]
		mask := bt.AttentionMask[b*T : (b+1)*T]
		off := 0
		if side == PadLeft {
			off = T - len(s.InputIDs)
		}
		for i := range row {
			row[i] = pad
		}
		copy(row[off:], s.InputIDs)
		for i := range s.InputIDs {
			mask[off+i] = 1
		}
		if withLabels {
			lab := bt.Labels[b*T : (b+1)*T]
			for i := range lab {
				lab[i] = IgnoreIndex
			}
			copy(lab[off:], s.Labels) // a sample without labels stays all IgnoreIndex
		}
		bt.Waste.RealTokens += int64(len(s.InputIDs))
	}
	bt.Waste.PaddedTokens = int64(B * T)
}

func (p *Processor) fillPixels(bt *Batch, samples []*Sample) {
	if bt.N == 0 {
		return
	}
	B, N, H, W := bt.B, bt.N, bt.H, bt.W
	bt.PixelValues = make([]float32, B*N*3*H*W)
	bt.PixelAttentionMask = make([]int32, B*N*H*W)
	lut := p.lut()
	for b, s := range samples {
		for n, im := range s.Images {
			slot := b*N + n
			lut.writeCHW(bt.PixelValues[slot*3*H*W:(slot+1)*3*H*W], im, H, W)
			mask := bt.PixelAttentionMask[slot*H*W : (slot+1)*H*W]
			for y := 0; y < im.H; y++ {
				row := mask[y*W : y*W+im.W]
				for x := range row {
					row[x] = 1
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
