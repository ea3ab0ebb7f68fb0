package eval

import (
	"context"
	"fmt"
	"io"

	"github.com/idefics2/idefics2/cauldron"
)

// Sample is one evaluation question.
type Sample struct {
	ID       string
	Question string
	Answers  []string // reference answers (10 for TextVQA, 1–3 for DocVQA)
	Images   [][]byte // encoded image files (PNG, JPEG, ...), in prompt order
}

// Source yields the samples of an evaluation split in a fixed order.
type Source interface {
	// Next returns the next sample, or io.EOF after the last.
	Next(ctx context.Context) (Sample, error)
}

// Samples is an in-memory Source.
type Samples struct {
	List []Sample
	pos  int
}

// Next implements Source.
func (s *Samples) Next(context.Context) (Sample, error) {
	if s.pos >= len(s.List) {
		return Sample{}, io.EOF
	}
	s.pos++
	return s.List[s.pos-1], nil
}

// streamSource reads a cauldron stream in file order, one pass.
type streamSource struct{ st *cauldron.Stream }

func (s streamSource) Next(ctx context.Context) (Sample, error) {
	r, err := s.st.Next(ctx)
	if err != nil {
		return Sample{}, err
	}
	out := Sample{ID: r.ID, Question: r.Question, Answers: r.Answers}
	for _, im := range r.Images {
		out.Images = append(out.Images, im.Bytes)
	}
	return out, nil
}

// OpenLmmsLab opens a local copy of lmms-lab/DocVQA (task "docvqa") or lmms-lab/textvqa
// ("textvqa") in the hub's parquet layout under root, one pass in file order.
func OpenLmmsLab(task Task, root, split string) (Source, error) {
	var src cauldron.Source
	var err error
	switch task {
	case DocVQA:
		src, err = cauldron.DocVQASource(root, split)
	case TextVQA:
		src, err = cauldron.TextVQASource(root, split)
	default:
		return nil, fmt.Errorf("eval: unknown task %q (docvqa, textvqa)", task)
	}
	if err != nil {
		return nil, err
	}
	st, err := cauldron.Open([]cauldron.Source{src}, cauldron.Options{Epochs: 1})
	if err != nil {
		return nil, err
	}
	return streamSource{st}, nil
}
