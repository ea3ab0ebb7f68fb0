package train

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/idefics2/idefics2/cauldron"
	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/model"
)

// Pipeline turns a stream of dataset records into model batches: records are decoded and
// encoded by a worker pool ahead of the trainer, then collated (right padding, bucketed shapes).
type Pipeline struct {
	Proc    *data.Processor
	Collate data.CollateOptions
	Encode  data.EncodeOptions
	stream  *cauldron.Stream
	pool    *cauldron.Pool[*data.Sample]
	Cursor  cauldron.Cursor // position after the last sample taken
	Waste   data.Waste
	Samples int64
}

// Sources turns the config's dataset list into cauldron sources.
func Sources(list []SourceConfig) ([]cauldron.Source, error) {
	var out []cauldron.Source
	for _, s := range list {
		switch s.Kind {
		case "", "cauldron":
			srcs, err := cauldron.CauldronSources(s.Path, s.Subsets...)
			if err != nil {
				return nil, err
			}
			for i := range srcs {
				if s.Weight > 0 {
					srcs[i].Weight = s.Weight
				}
				if s.Name != "" && len(srcs) == 1 {
					srcs[i].Name = s.Name
				}
			}
			out = append(out, srcs...)
		case "custom":
			name := s.Name
			if name == "" {
				name = "custom"
			}
			src, err := cauldron.CustomSource(name, cauldron.CustomLayout{Label: name, Columns: s.Columns}, s.Path)
			if err != nil {
				return nil, err
			}
			src.Weight = s.Weight
			out = append(out, src)
		case "docvqa", "textvqa":
			split := s.Split
			if split == "" {
				split = "validation"
			}
			open := cauldron.DocVQASource
			if s.Kind == "textvqa" {
				open = cauldron.TextVQASource
			}
			src, err := open(s.Path, split)
			if err != nil {
				return nil, err
			}
			src.Weight = s.Weight
			out = append(out, src)
		default:
			return nil, fmt.Errorf("data source %q: kind %q is not known (cauldron, custom, docvqa, textvqa)", s.Name, s.Kind)
		}
	}
	return out, nil
}

// NewPipeline opens the sources; cursor, when not nil, resumes exactly after the sample it marks.
func NewPipeline(ctx context.Context, srcs []cauldron.Source, opts cauldron.Options, cursor *cauldron.Cursor,
	proc *data.Processor, enc data.EncodeOptions, col data.CollateOptions, workers int) (*Pipeline, error) {
	st, err := cauldron.Open(srcs, opts)
	if err != nil {
		return nil, err
	}
	if cursor != nil {
		if err := st.Restore(*cursor); err != nil {
			return nil, err
		}
	}
	p := &Pipeline{Proc: proc, Collate: col, Encode: enc, stream: st, Cursor: st.Cursor()}
	p.pool = cauldron.NewPool(ctx, st, p.process, cauldron.PoolOptions{Workers: workers})
	return p, nil
}

// process decodes a record's images and encodes its conversation; unusable records are skipped
// with a reason (the pool counts and logs them with file and row).
func (p *Pipeline) process(_ context.Context, r *cauldron.Record) (*data.Sample, error) {
	images := make([]*data.Image, len(r.Images))
	for i, im := range r.Images {
		img, err := data.DecodeImage(im.Bytes)
		if err != nil {
			return nil, cauldron.Skip(cauldron.ReasonBadImage, fmt.Errorf("image %d: %w", i, err))
		}
		images[i] = img
	}
	s, err := p.Proc.EncodeChat(toDataMessages(r.Messages()), images, p.Encode)
	switch {
	case errors.Is(err, data.ErrTooLong):
		return nil, cauldron.Skip("too_long", err)
	case errors.Is(err, data.ErrImageCount):
		return nil, cauldron.Skip(cauldron.ReasonImageCount, err)
	case errors.Is(err, data.ErrImageShape):
		return nil, cauldron.Skip(cauldron.ReasonBadImage, err)
	case err != nil:
		return nil, cauldron.Skip("encode_error", err)
	}
	return s, nil
}

func toDataMessages(ms []cauldron.Message) []data.Message {
	out := make([]data.Message, len(ms))
	for i, m := range ms {
		out[i].Role = m.Role
		for _, c := range m.Content {
			out[i].Content = append(out[i].Content, data.Content{Type: c.Type, Text: c.Text})
		}
	}
	return out
}

// Next returns the next batch of n samples (fewer at the end of the data; io.EOF when none is
// left).
func (p *Pipeline) Next(c model.Config, n int) (*model.Batch, error) {
	var samples []*data.Sample
	for len(samples) < n {
		it, err := p.pool.Next()
		if err != nil {
			if len(samples) > 0 && errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		samples = append(samples, it.Value)
		p.Cursor = it.Cursor
	}
	p.Samples += int64(len(samples))
	b, err := p.Proc.Collate(samples, p.Collate)
	if err != nil {
		return nil, err
	}
	p.Waste.Add(b.Waste)
	return ModelBatch(c, b)
}

// Stats is the stream's skip counters.
func (p *Pipeline) Stats() *cauldron.Stats { return p.stream.Stats() }

// Close stops the workers.
func (p *Pipeline) Close() { p.pool.Close() }

// ModelBatch converts a collated batch into the model's graph inputs.
func ModelBatch(c model.Config, b *data.Batch) (*model.Batch, error) {
	in := model.Inputs{B: b.B, T: b.T, InputIDs: b.InputIDs, AttentionMask: b.AttentionMask, Labels: b.Labels}
	if b.N > 0 {
		in.N, in.H, in.W = b.N, b.H, b.W
		in.PixelValues = b.PixelValues
		in.PixelAttentionMask = b.PixelAttentionMask
	}
	return model.NewBatch(c, in)
}
