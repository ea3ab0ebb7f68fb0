package model

import (
	"fmt"
)

// Inputs is one batch as HF's processor makes it (row-major flat slices with their shapes).
type Inputs struct {
	B, T          int
	InputIDs      []int64 // [B, T]
	AttentionMask []int64 // [B, T]; nil means all ones
	Labels        []int64 // [B, T]; nil when no loss is wanted; −100 = ignored
	PositionIDs   []int64 // [B, T]; nil means 0..T−1 per row, as HF's forward without position_ids

	N, H, W            int       // images per sample (including padding slots), padded height and width
	PixelValues        []float32 // [B, N, 3, H, W]; nil for a text-only batch
	PixelAttentionMask []int64   // [B, N, H, W]; nil means every pixel of a real image is valid
}

// Batch is Inputs turned into static-shape graph inputs. Everything HF derives with Python
// control flow is resolved here: padding images are dropped, pixels are cropped to whole
// patches, patch masks and NaViT position ids are computed, and each <image> token gets the row
// of the image-feature matrix it takes.
type Batch struct {
	B, T          int
	InputIDs      []int32 // [B, T]
	AttentionMask []int32 // [B, T]
	PositionIDs   []int32 // [B, T]
	Targets       []int32 // [B, T]: labels shifted left by one, −100 ignored; nil without labels

	M, Hp, Wp         int       // real images, patch rows and columns of the padded grid
	Channels, Patch   int       // pixel channels and patch side
	Pixels            []float32 // [M, C, Hp·p, Wp·p]
	PatchMask         []int32   // [M, Hp·Wp], 1 = valid patch
	VisionPositionIDs []int32   // [M, Hp·Wp]
	ImageRow          []int32   // [B, T]: row of the [M·latents, D] feature matrix, 0 for text tokens
}

// IgnoreIndex marks label positions without loss.
const IgnoreIndex = -100

// NewBatch prepares in for the graph of c.
func NewBatch(c Config, in Inputs) (*Batch, error) {
	bt := in.B * in.T
	if len(in.InputIDs) != bt {
		return nil, fmt.Errorf("input_ids has %d values, want B·T = %d·%d", len(in.InputIDs), in.B, in.T)
	}
	b := &Batch{B: in.B, T: in.T, InputIDs: make([]int32, bt), AttentionMask: make([]int32, bt),
		PositionIDs: make([]int32, bt), ImageRow: make([]int32, bt)}
	for i, id := range in.InputIDs {
		if id < 0 || id >= int64(c.Text.VocabSize) {
			return nil, fmt.Errorf("input_ids[%d][%d] = %d is outside the vocabulary (%d)", i/in.T, i%in.T, id, c.Text.VocabSize)
		}
		b.InputIDs[i] = int32(id)
		b.AttentionMask[i] = 1
		if in.AttentionMask != nil {
			b.AttentionMask[i] = int32(in.AttentionMask[i])
		}
		b.PositionIDs[i] = int32(i % in.T)
		if in.PositionIDs != nil {
			b.PositionIDs[i] = int32(in.PositionIDs[i])
		}
	}
	if in.Labels != nil {
		b.Targets = ShiftLabels(in.Labels, in.B, in.T)
	}
	if err := b.prepareImages(c, in); err != nil {
		return nil, err
	}
	// Each <image> token takes the next feature row, in row-major (sample, position) order.
	perImage := c.Perceiver.NLatents
	row := 0
	for i, id := range b.InputIDs {
		if int(id) == c.ImageTokenID {
			b.ImageRow[i] = int32(row)
			row++
		}
	}
	if row != b.M*perImage {
		return nil, fmt.Errorf("the batch has %d <image> tokens but %d real images × %d latents = %d image features; the prompt and the images disagree", row, b.M, perImage, b.M*perImage)
	}
	return b, nil
}

// ShiftLabels is HF's causal-LM shift: the target of position t is labels[t+1], and the last
// position of each row has none.
func ShiftLabels(labels []int64, B, T int) []int32 {
	out := make([]int32, B*T)
	for r := 0; r < B; r++ {
		for t := 0; t < T; t++ {
			out[r*T+t] = IgnoreIndex
			if t+1 < T {
				out[r*T+t] = int32(labels[r*T+t+1])
			}
		}
	}
	return out
}

func (b *Batch) prepareImages(c Config, in Inputs) error {
	if in.PixelValues == nil {
		return nil
	}
	C, p := c.Vision.NumChannels, c.Vision.PatchSize
	per := C * in.H * in.W
	if len(in.PixelValues) != in.B*in.N*per {
		return fmt.Errorf("pixel_values has %d values, want B·N·%d·H·W = %d", len(in.PixelValues), C, in.B*in.N*per)
	}
	if in.PixelAttentionMask != nil && len(in.PixelAttentionMask) != in.B*in.N*in.H*in.W {
		return fmt.Errorf("pixel_attention_mask has %d values, want B·N·H·W = %d", len(in.PixelAttentionMask), in.B*in.N*in.H*in.W)
	}
	b.Hp, b.Wp, b.Channels, b.Patch = in.H/p, in.W/p, C, p
	if b.Hp == 0 || b.Wp == 0 {
		return fmt.Errorf("images of %d×%d pixels are smaller than one %d-pixel patch", in.H, in.W, p)
	}
	H, W := b.Hp*p, b.Wp*p // HF's unfold discards rows and columns that do not fill a patch.
	S := c.Vision.PatchesPerSide()
	for img := 0; img < in.B*in.N; img++ {
		pix := in.PixelValues[img*per : (img+1)*per]
		if allZero(pix) { // a padding slot: HF keeps an image iff not all its values are 0.0
			continue
		}
		for ch := 0; ch < C; ch++ {
			for y := 0; y < H; y++ {
				row := pix[(ch*in.H+y)*in.W:]
				b.Pixels = append(b.Pixels, row[:W]...)
			}
		}
		mask := make([]int32, b.Hp*b.Wp)
		for py := 0; py < b.Hp; py++ {
			for px := 0; px < b.Wp; px++ {
				mask[py*b.Wp+px] = 1
				if in.PixelAttentionMask == nil {
					continue
				}
				pm := in.PixelAttentionMask[img*in.H*in.W:]
			patch: // a patch is valid iff all p·p of its pixels are
				for y := py * p; y < (py+1)*p; y++ {
					for x := px * p; x < (px+1)*p; x++ {
						if pm[y*in.W+x] == 0 {
							mask[py*b.Wp+px] = 0
							break patch
						}
					}
				}
			}
		}
		pos, err := visionPositionIDs(mask, b.Hp, b.Wp, S)
		if err != nil {
			return fmt.Errorf("image %d of sample %d: %w", img%in.N, img/in.N, err)
		}
		b.PatchMask = append(b.PatchMask, mask...)
		b.VisionPositionIDs = append(b.VisionPositionIDs, pos...)
		b.M++
	}
	return nil
}

// visionPositionIDs assigns bucket_h·S + bucket_w to the valid patches of a top-left nh×nw
// rectangle (nh valid patches in the first column, nw in the first row); padding patches get 0.
func visionPositionIDs(mask []int32, hp, wp, S int) ([]int32, error) {
	nh, nw := 0, 0
	for y := 0; y < hp; y++ {
		nh += int(mask[y*wp])
	}
	for x := 0; x < wp; x++ {
		nw += int(mask[x])
	}
	pos := make([]int32, hp*wp)
	if nh == 0 || nw == 0 {
		return pos, nil
	}
	bh, bw := PositionBuckets(nh, S), PositionBuckets(nw, S)
	for y := 0; y < hp; y++ {
		for x := 0; x < wp; x++ {
			if mask[y*wp+x] == 0 {
				continue
			}
			if y >= nh || x >= nw {
				return nil, fmt.Errorf("its valid pixels do not form a top-left rectangle, which Idefics2 position ids assume (pad images bottom/right)")
			}
			pos[y*wp+x] = int32(bh[y]*S + bw[x])
		}
	}
	return pos, nil
}

func allZero(xs []float32) bool {
	for _, x := range xs {
		if x != 0 {
			return false
		}
	}
	return true
}
