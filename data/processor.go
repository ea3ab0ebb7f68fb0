package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// Processor turns chats and images into model inputs: HF's Idefics2Processor plus the
// labelling and length policy a trainer needs. It is safe for concurrent use; set its fields
// before the first call and leave them alone afterwards (the pixel table is built once).
type Processor struct {
	Tokenizer *Tokenizer
	Images    ImageProcessorConfig
	// ImageSeqLen is the number of <image> tokens per image (processor_config.json's
	// image_seq_len; the perceiver's latents): 64 for Idefics2.
	ImageSeqLen int

	skipped, truncated atomic.Int64
	lutOnce            sync.Once
	pixelLUT           *PixelLUT
}

// NewProcessor pairs a tokenizer with an image processor configuration. The text side follows
// the tokenizer's Compat.
func NewProcessor(tok *Tokenizer, images ImageProcessorConfig) (*Processor, error) {
	if err := images.Validate(); err != nil {
		return nil, err
	}
	if tok.Image < 0 || tok.FakeImage < 0 {
		return nil, fmt.Errorf("tokenizer lacks %s or %s as added tokens; it is not an Idefics2 tokenizer", TokenImage, TokenFakeImage)
	}
	return &Processor{Tokenizer: tok, Images: images, ImageSeqLen: 64}, nil
}

// LabelMode selects which tokens carry a training target.
type LabelMode int

const (
	// NoLabels: inference; Sample.Labels stays nil.
	NoLabels LabelMode = iota
	// LabelAnswers: only what the model generates after each "Assistant:" — the answer, with
	// the space the template puts before it, and the closing <end_of_utterance> (so a
	// fine-tuned model learns to stop). The paper's SFT setting.
	LabelAnswers
	// LabelAll: every token except <image> tokens (and padding), like HF's fine-tuning
	// tutorial.
	LabelAll
)

// IgnoreIndex marks a position without a training target (PyTorch's cross-entropy default).
const IgnoreIndex = -100

// Overflow says what to do with a sample longer than MaxLength. Image spans are never cut:
// a model fed 40 of an image's 64 tokens sees a different image layout than it was trained on.
type Overflow int

const (
	// OverflowSkip rejects the sample with ErrTooLong (and counts it in Stats).
	OverflowSkip Overflow = iota
	// OverflowDropTurns drops trailing turns (with their images) until the sample fits and
	// still ends with an assistant answer; a sample whose first exchange is already too long
	// is skipped. Training only: with a generation prompt it behaves like OverflowSkip.
	OverflowDropTurns
)

// EncodeOptions configures one sample's encoding.
type EncodeOptions struct {
	AddGenerationPrompt bool
	Labels              LabelMode
	MaxLength           int // 0: no limit
	Overflow            Overflow
}

var (
	// ErrTooLong: the sample exceeds MaxLength and could not be shortened without cutting an image.
	ErrTooLong = errors.New("sample longer than the maximum sequence length")
	// ErrImageCount: the number of images differs from the number of <image> placeholders.
	ErrImageCount = errors.New("image count does not match the <image> placeholders")
)

// Sample is one encoded example. Images are the resized uint8 images the model will see, in
// order (five per input image with splitting); they are rescaled and normalized into the
// batch tensor by Collate.
type Sample struct {
	InputIDs []int32
	Labels   []int32 // nil without labels
	Images   []*Image
	// Prompt is the chat template's output before <image> expansion; Text is what the
	// tokenizer saw.
	Prompt, Text string
	// DroppedTurns counts trailing messages removed by OverflowDropTurns.
	DroppedTurns int
}

// Stats counts what the length policy did.
type Stats struct {
	Skipped   int64 // samples rejected with ErrTooLong
	Truncated int64 // samples that lost trailing turns
}

// Stats returns the counters since the processor was made.
func (p *Processor) Stats() Stats {
	return Stats{Skipped: p.skipped.Load(), Truncated: p.truncated.Load()}
}

// EncodeChat renders messages with the chat template, expands the image placeholders,
// tokenizes (with BOS), computes labels and processes the images. images are in placeholder
// order.
func (p *Processor) EncodeChat(msgs []Message, images []*Image, opt EncodeOptions) (*Sample, error) {
	s, err := p.encodeChat(msgs, images, opt)
	if errors.Is(err, ErrTooLong) && opt.Overflow == OverflowDropTurns && !opt.AddGenerationPrompt {
		for n := len(msgs) - 1; n > 0; n-- {
			kept := msgs[:n]
			if !kept[n-1].IsAssistant() {
				continue // a trailing question without its answer teaches nothing
			}
			r, rerr := renderChat(kept, false)
			if rerr != nil {
				break
			}
			s, err = p.encodeChat(kept, images[:min(len(images), strings.Count(r.Text, TokenImage))], opt)
			if err == nil {
				s.DroppedTurns = len(msgs) - n
				p.truncated.Add(1)
				return s, nil
			}
			if !errors.Is(err, ErrTooLong) {
				return nil, err
			}
		}
		err = fmt.Errorf("%w even with trailing turns dropped", ErrTooLong)
	}
	if errors.Is(err, ErrTooLong) {
		p.skipped.Add(1)
	}
	return s, err
}

func (p *Processor) encodeChat(msgs []Message, images []*Image, opt EncodeOptions) (*Sample, error) {
	if len(msgs) == 0 {
		return nil, errors.New("no messages")
	}
	r, err := renderChat(msgs, opt.AddGenerationPrompt)
	if err != nil {
		return nil, err
	}
	return p.encode(r.Text, r.Answers, images, opt)
}

// EncodeText encodes a prompt written by hand (with literal "<image>" placeholders), like
// HF's processor(text=..., images=...). Without turn structure only LabelAll is possible.
func (p *Processor) EncodeText(prompt string, images []*Image, opt EncodeOptions) (*Sample, error) {
	if opt.Labels == LabelAnswers {
		return nil, errors.New("LabelAnswers needs chat messages; use EncodeChat or LabelAll")
	}
	s, err := p.encode(prompt, nil, images, opt)
	if errors.Is(err, ErrTooLong) {
		p.skipped.Add(1)
	}
	return s, err
}

func (p *Processor) encode(prompt string, answers []span, images []*Image, opt EncodeOptions) (*Sample, error) {
	if n := strings.Count(prompt, TokenImage); n != len(images) {
		return nil, fmt.Errorf("%w: the text holds %d %s placeholders but %d images were given", ErrImageCount, n, TokenImage, len(images))
	}
	text, m := expandImages(prompt, p.ImageSeqLen, p.Images.DoImageSplitting, p.Tokenizer.Compat())
	ids, offs := p.Tokenizer.EncodeOffsets(text, true)
	if opt.MaxLength > 0 && len(ids) > opt.MaxLength {
		return nil, fmt.Errorf("%w: %d tokens > %d", ErrTooLong, len(ids), opt.MaxLength)
	}
	s := &Sample{InputIDs: ids, Prompt: prompt, Text: text}
	switch opt.Labels {
	case LabelAnswers:
		mapped := make([]span, len(answers))
		for i, a := range answers {
			mapped[i] = span{m[a.Start], m[a.End]}
		}
		s.Labels = answerLabels(ids, offs, mapped, p.Tokenizer.Image)
	case LabelAll:
		s.Labels = make([]int32, len(ids))
		for i, id := range ids {
			s.Labels[i] = id
			if id == p.Tokenizer.Image {
				s.Labels[i] = IgnoreIndex
			}
		}
	}
	for i, img := range images {
		if err := p.Images.CheckImage(img); err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
	}
	for _, img := range images {
		s.Images = append(s.Images, p.Images.ProcessImage(img)...)
	}
	return s, nil
}

// answerLabels keeps a token's id as its label when its text overlaps an answer span. A token
// whose bytes straddle a span start (e.g. "▁Yes" covering the template's space and the
// answer) is part of what the model must generate, so it is kept.
func answerLabels(ids []int32, offs [][2]int, answers []span, imageID int32) []int32 {
	labels := make([]int32, len(ids))
	for i := range labels {
		labels[i] = IgnoreIndex
	}
	a := 0
	for i, id := range ids {
		o := offs[i]
		if o[0] == o[1] || id == imageID {
			continue // BOS/EOS and image tokens are never targets
		}
		for a < len(answers) && answers[a].End <= o[0] {
			a++
		}
		if a < len(answers) && o[0] < answers[a].End && o[1] > answers[a].Start {
			labels[i] = id
		}
	}
	return labels
}

// LoadProcessor reads what an HF Idefics2 checkpoint directory holds for its processor: the
// tokenizer files, preprocessor_config.json (class defaults when absent) and
// processor_config.json's image_seq_len (64 when absent).
func LoadProcessor(dir string, compat Compat) (*Processor, error) {
	tok, err := LoadTokenizer(dir, compat)
	if err != nil {
		return nil, err
	}
	cfg := DefaultImageProcessorConfig()
	if _, err := os.Stat(filepath.Join(dir, "preprocessor_config.json")); err == nil {
		if cfg, err = LoadImageProcessorConfig(filepath.Join(dir, "preprocessor_config.json")); err != nil {
			tok.Close()
			return nil, err
		}
	}
	p, err := NewProcessor(tok, cfg)
	if err != nil {
		tok.Close()
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "processor_config.json")); err == nil {
		var pc struct {
			ImageSeqLen *int `json:"image_seq_len"`
		}
		if err := json.Unmarshal(b, &pc); err != nil {
			tok.Close()
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "processor_config.json"), err)
		}
		if pc.ImageSeqLen != nil {
			p.ImageSeqLen = *pc.ImageSeqLen
		}
	}
	return p, nil
}
