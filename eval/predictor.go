package eval

import (
	"context"
	"fmt"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/model"
)

// ModelPredictor answers requests with an Idefics2 model: HF's processor (data) for the prompt
// and images, the KV-cache generator (model) for decoding, the tokenizer to decode the new
// tokens with special tokens skipped.
type ModelPredictor struct {
	Generator  *model.Generator
	Tokenizer  *data.Tokenizer
	Images     data.ImageProcessorConfig // the model's preprocessor_config.json
	Generation model.GenerationConfig    // decoding rules; MaxNewTokens comes from each request
	// Collate pads a batch (left, for generation); its buckets keep the prefill shapes few.
	Collate data.CollateOptions

	procs map[bool]*data.Processor
}

// NewModelPredictor pairs a generator with its tokenizer and image processor configuration.
func NewModelPredictor(gen *model.Generator, tok *data.Tokenizer, images data.ImageProcessorConfig, gc model.GenerationConfig) *ModelPredictor {
	return &ModelPredictor{Generator: gen, Tokenizer: tok, Images: images, Generation: gc,
		Collate: data.CollateOptions{PadSide: data.PadLeft}}
}

func (p *ModelPredictor) processor(splitting bool) (*data.Processor, error) {
	if p.procs == nil {
		p.procs = map[bool]*data.Processor{}
	}
	if proc, ok := p.procs[splitting]; ok {
		return proc, nil
	}
	cfg := p.Images
	cfg.DoImageSplitting = splitting
	proc, err := data.NewProcessor(p.Tokenizer, cfg)
	if err != nil {
		return nil, err
	}
	proc.ImageSeqLen = p.Generator.Model.Config.Perceiver.NLatents
	p.procs[splitting] = proc
	return proc, nil
}

// Predict implements Predictor: the requests that encode are generated together as one left
// padded batch (they must share Splitting and MaxNewTokens, as a preset's do); a request whose
// images or prompt fail to encode gets its error in Output.Err.
func (p *ModelPredictor) Predict(ctx context.Context, reqs []Request) ([]Output, error) {
	outs := make([]Output, len(reqs))
	if len(reqs) == 0 {
		return outs, nil
	}
	splitting := p.Images.DoImageSplitting
	if reqs[0].Splitting != nil {
		splitting = *reqs[0].Splitting
	}
	proc, err := p.processor(splitting)
	if err != nil {
		return nil, err
	}
	var samples []*data.Sample
	var rows []int
	for i, r := range reqs {
		if r.MaxNewTokens != reqs[0].MaxNewTokens || (r.Splitting == nil) != (reqs[0].Splitting == nil) ||
			(r.Splitting != nil && *r.Splitting != splitting) {
			return nil, fmt.Errorf("eval: requests of one batch must share splitting and max_new_tokens")
		}
		s, err := p.encode(proc, r)
		if err != nil {
			outs[i].Err = err
			continue
		}
		samples = append(samples, s)
		rows = append(rows, i)
	}
	if len(samples) == 0 {
		return outs, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	batch, err := proc.Collate(samples, p.Collate)
	if err != nil {
		return nil, err
	}
	gc := p.Generation
	gc.MaxNewTokens = reqs[0].MaxNewTokens
	g, err := p.Generator.Generate(InputsOf(batch), gc)
	if err != nil {
		return nil, err
	}
	for k, i := range rows {
		outs[i] = Output{Text: p.Tokenizer.Decode(g.NewTokens[k], true), NewTokens: len(g.NewTokens[k]), Stopped: g.Stopped[k]}
	}
	return outs, nil
}

func (p *ModelPredictor) encode(proc *data.Processor, r Request) (*data.Sample, error) {
	imgs := make([]*data.Image, len(r.Images))
	for i, b := range r.Images {
		im, err := data.DecodeImage(b)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		imgs[i] = im
	}
	return proc.EncodeText(r.Prompt, imgs, data.EncodeOptions{AddGenerationPrompt: true})
}

// InputsOf converts a collated batch into the model's inputs (the slices are shared).
func InputsOf(b *data.Batch) model.Inputs {
	in := model.Inputs{B: b.B, T: b.T, N: b.N, H: b.H, W: b.W, InputIDs: b.InputIDs, AttentionMask: b.AttentionMask}
	if b.N > 0 {
		in.PixelValues = b.PixelValues
		in.PixelAttentionMask = b.PixelAttentionMask
	}
	return in
}
