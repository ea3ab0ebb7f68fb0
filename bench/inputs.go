package bench

import (
	"math/rand/v2"

	"github.com/idefics2/idefics2/model"
)

// Shape is the batch a measurement runs on: B samples, each with Images images of ImageSize²
// pixels (1 at full resolution, or 5 with image splitting, the crops padded to the batch's
// largest image as the processor pads them) and TextTokens text tokens around its <image> tokens.
type Shape struct {
	Batch      int `json:"batch"`
	TextTokens int `json:"text_tokens"`
	ImageSize  int `json:"image_size"`
	Images     int `json:"images_per_row"`
	Seq        int `json:"seq"`               // T: text tokens + Images·latents <image> tokens + Images+1 <fake_token_around_image>
	Patches    int `json:"patches_per_image"` // (ImageSize/patch)²
	NewTokens  int `json:"new_tokens"`        // generation length
}

// NewShape completes s for configuration c.
func NewShape(c model.Config, batch, textTokens, imageSize, newTokens, images int) Shape {
	if imageSize <= 0 {
		imageSize = c.Vision.ImageSize
	}
	images = max(images, 1)
	p := imageSize / c.Vision.PatchSize
	return Shape{Batch: batch, TextTokens: textTokens, ImageSize: imageSize, Images: images,
		Seq: textTokens + images*c.Perceiver.NLatents + images + 1, Patches: p * p, NewTokens: newTokens}
}

// tokenIDs are the ids the synthetic prompt uses: ordinary text ids and the two image markers.
// Small vocabularies (the tiny fixture) have no id 32000, so the fake token becomes an ordinary
// id there; what matters for speed is only the count of <image> tokens.
func tokenIDs(c model.Config) (textLo, textHi, fake int) {
	v := c.Text.VocabSize
	fake = c.FakeImageTokenID
	textHi = min(v, 32000)
	if fake >= v {
		fake = 3
	}
	return 3, textHi, fake
}

// SyntheticInputs makes one batch of shape s: per row BOS, half the text, <fake> <image>×latents
// <fake>, the rest of the text; random pixels; labels on the text tokens only (as SFT masks).
func SyntheticInputs(c model.Config, s Shape, seed uint64) model.Inputs {
	rng := rand.New(rand.NewPCG(seed, 0x1d3f))
	lo, hi, fake := tokenIDs(c)
	n := c.Perceiver.NLatents
	T := s.Seq
	images := max(s.Images, 1)
	span := images*(n+1) + 1 // <fake> (<image>×n <fake>)×images
	in := model.Inputs{B: s.Batch, T: T, InputIDs: make([]int64, s.Batch*T), Labels: make([]int64, s.Batch*T)}
	for r := 0; r < s.Batch; r++ {
		row := in.InputIDs[r*T : (r+1)*T]
		lab := in.Labels[r*T : (r+1)*T]
		half := s.TextTokens / 2
		for t := range row {
			switch {
			case t == 0:
				row[t] = int64(c.Text.BOSTokenID)
			case t >= half && t < half+span && (t-half)%(n+1) == 0:
				row[t] = int64(fake)
			case t > half && t < half+span:
				row[t] = int64(c.ImageTokenID)
			default:
				id := lo + rng.IntN(hi-lo)
				if id == c.ImageTokenID || id == fake {
					id = lo
				}
				row[t] = int64(id)
			}
			lab[t] = row[t]
			if t >= half && t < half+span {
				lab[t] = model.IgnoreIndex
			}
		}
	}
	S := s.ImageSize
	in.N, in.H, in.W = images, S, S
	in.PixelValues = make([]float32, s.Batch*images*3*S*S)
	for i := range in.PixelValues {
		in.PixelValues[i] = float32(rng.NormFloat64())
	}
	return in
}
