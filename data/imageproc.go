package data

import (
	"encoding/json"
	"fmt"
	"os"
)

// ImageProcessorConfig holds the keys of HF's preprocessor_config.json that Idefics2 uses.
// Zero values are not defaults: start from DefaultImageProcessorConfig or
// LoadImageProcessorConfig.
type ImageProcessorConfig struct {
	DoConvertRGB     bool      `json:"do_convert_rgb"`
	DoResize         bool      `json:"do_resize"`
	Size             ImageSize `json:"size"`
	Resample         int       `json:"resample"`
	DoRescale        bool      `json:"do_rescale"`
	RescaleFactor    float64   `json:"rescale_factor"`
	DoNormalize      bool      `json:"do_normalize"`
	ImageMean        []float64 `json:"image_mean"`
	ImageStd         []float64 `json:"image_std"`
	DoPad            bool      `json:"do_pad"`
	DoImageSplitting bool      `json:"do_image_splitting"`
}

// ImageSize is HF's size dict for Idefics2: the long side is brought down to LongestEdge,
// then both sides are raised to at least ShortestEdge.
type ImageSize struct {
	LongestEdge  int `json:"longest_edge"`
	ShortestEdge int `json:"shortest_edge"`
}

// PILBilinear is PIL's resample code for BILINEAR, the only filter Idefics2 uses.
const PILBilinear = 2

// DefaultImageProcessorConfig is the class default of HF's Idefics2 image processor. Note that
// the idefics2-8b checkpoint's preprocessor_config.json turns do_image_splitting on, while
// the HF fine-tuning tutorial and most fine-tunes keep it off.
func DefaultImageProcessorConfig() ImageProcessorConfig {
	return ImageProcessorConfig{
		DoConvertRGB:  true,
		DoResize:      true,
		Size:          ImageSize{LongestEdge: 980, ShortestEdge: 378},
		Resample:      PILBilinear,
		DoRescale:     true,
		RescaleFactor: 1.0 / 255,
		DoNormalize:   true,
		ImageMean:     []float64{0.5, 0.5, 0.5},
		ImageStd:      []float64{0.5, 0.5, 0.5},
		DoPad:         true,
	}
}

// LoadImageProcessorConfig reads a preprocessor_config.json over the class defaults.
func LoadImageProcessorConfig(path string) (ImageProcessorConfig, error) {
	c := DefaultImageProcessorConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, c.Validate()
}

// Validate rejects settings this processor would not reproduce faithfully.
func (c ImageProcessorConfig) Validate() error {
	if c.DoResize {
		if c.Resample != PILBilinear {
			return fmt.Errorf("image processor: resample=%d is not supported (only %d, PIL BILINEAR, which Idefics2 uses)", c.Resample, PILBilinear)
		}
		if c.Size.LongestEdge <= 0 || c.Size.ShortestEdge <= 0 {
			return fmt.Errorf("image processor: size needs positive longest_edge and shortest_edge, got %+v", c.Size)
		}
	}
	if c.DoNormalize && (len(c.ImageMean) != 3 || len(c.ImageStd) != 3) {
		return fmt.Errorf("image processor: image_mean and image_std need 3 values, got %v and %v", c.ImageMean, c.ImageStd)
	}
	return nil
}

// ImagesPerInput is how many images the model sees per input image: 5 with splitting (4
// crops + the whole), else 1.
func (c ImageProcessorConfig) ImagesPerInput() int {
	if c.DoImageSplitting {
		return 5
	}
	return 1
}

// ResizeOutputSize is Idefics2's size rule (spec §3.2 step 4): a long side above LongestEdge
// is brought down to it, the other side following the aspect ratio truncated with int();
// then each side is raised to ShortestEdge. Images are never upscaled on the long side, and
// small ones are stretched, which can change their aspect ratio.
func (c ImageProcessorConfig) ResizeOutputSize(w, h int) (int, int) {
	maxLen, minLen := c.Size.LongestEdge, c.Size.ShortestEdge
	aspect := float64(w) / float64(h)
	if w >= h && w > maxLen {
		w = maxLen
		h = int(float64(w) / aspect)
	} else if h > w && h > maxLen {
		h = maxLen
		w = int(float64(h) * aspect)
	}
	return max(w, minLen), max(h, minLen)
}

// ProcessImage runs the per-image part of the pipeline that stays in uint8: splitting (on the
// original pixels, before resizing) and resizing. It returns the images the model sees for
// this input, in HF's order: top-left, top-right, bottom-left, bottom-right, whole.
// Rescale, normalize and padding happen when a batch is collated, straight into the batch
// tensor.
func (c ImageProcessorConfig) ProcessImage(img *Image) []*Image {
	var parts []*Image
	if c.DoImageSplitting {
		mw, mh := img.W/2, img.H/2
		parts = []*Image{
			img.Crop(0, 0, mw, mh),
			img.Crop(mw, 0, img.W, mh),
			img.Crop(0, mh, mw, img.H),
			img.Crop(mw, mh, img.W, img.H),
			img,
		}
	} else {
		parts = []*Image{img}
	}
	if !c.DoResize {
		return parts
	}
	out := make([]*Image, len(parts))
	for i, p := range parts {
		w, h := c.ResizeOutputSize(p.W, p.H)
		out[i] = ResizeBilinear(p, w, h)
	}
	return out
}
