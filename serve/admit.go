package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/model"
)

// genRequest is what both APIs ask for, once their JSON is read: a prompt in Idefics2's text
// form (literal <image> placeholders, one per URL) and the decoding settings.
type genRequest struct {
	Model      string
	Prompt     string
	ImageURLs  []string
	ImageParam func(i int) string // names image i in error messages
	MaxTokens  int                // 0: the server's default
	Sampling   sampling
	Stops      []string
	KeepStop   bool
}

// admitted is a request in the queue, with what its answer needs.
type admitted struct {
	job          *job
	model        *servedModel
	promptTokens int
	stream       *textStream
	start        time.Time
}

// admit checks and encodes a request and puts it in the queue. Every failure that is the
// client's is a 4xx; encoding happens here, before the queue, so that it runs in parallel and a
// bad request never takes a place in it.
func (s *Server) admit(ctx context.Context, g genRequest, start time.Time) (*admitted, error) {
	if s.draining.Load() {
		return nil, errShuttingDown
	}
	m, err := s.models.lookup(g.Model)
	if err != nil {
		return nil, err
	}
	if len(g.ImageURLs) > s.opts.MaxImages {
		return nil, badRequest("messages", "the request has %d images; this server takes at most %d per request (serve.max_images)", len(g.ImageURLs), s.opts.MaxImages)
	}
	images := make([]*data.Image, len(g.ImageURLs))
	for i, u := range g.ImageURLs {
		param := g.ImageParam(i)
		b, err := s.images.fetch(ctx, param, u)
		if err != nil {
			return nil, err
		}
		if err := data.CheckImageHeader(b); err != nil {
			return nil, badRequest(param, "image %d: %v", i, err)
		}
		if images[i], err = data.DecodeImage(b); err != nil {
			return nil, badRequest(param, "image %d does not decode: %v", i, err)
		}
	}
	sample, err := s.models.processor().EncodeText(g.Prompt, images, data.EncodeOptions{})
	if err != nil {
		return nil, badRequest("messages", "%v", err)
	}
	n := len(sample.InputIDs)
	ctxLen := m.Config.Text.MaxPositionEmbeddings
	if s.opts.MaxPromptTokens > 0 && n > s.opts.MaxPromptTokens {
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: "messages", Code: "context_length_exceeded",
			Message: fmt.Sprintf("the prompt is %d tokens (images included); this server takes at most %d (serve.max_prompt_tokens)", n, s.opts.MaxPromptTokens)}
	}
	maxNew := g.MaxTokens
	if maxNew == 0 {
		maxNew = min(s.opts.DefaultMaxNew, max(ctxLen-n, 1))
	}
	if maxNew > s.opts.MaxNewTokens {
		return nil, badRequest("max_tokens", "max_tokens = %d: this server generates at most %d tokens per request (serve.max_new_tokens)", maxNew, s.opts.MaxNewTokens)
	}
	if ctxLen > 0 && n+maxNew > ctxLen {
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: "messages", Code: "context_length_exceeded",
			Message: fmt.Sprintf("the prompt (%d tokens, images included) plus max_tokens (%d) exceeds the model's context of %d tokens", n, maxNew, ctxLen)}
	}
	if budget := s.sched.kvBudget; budget > 0 {
		if need := cacheAlone(m, n, maxNew); need > budget {
			return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: "max_tokens", Code: "context_length_exceeded",
				Message: fmt.Sprintf("the prompt (%d tokens) plus max_tokens (%d) needs %.2f GiB of KV cache; this server's budget is %.2f GiB (serve.kv_cache_gib)",
					n, maxNew, float64(need)/(1<<30), float64(budget)/(1<<30))}
		}
	}
	gc, err := decoding(s.models.Generation, g.Sampling, maxNew)
	if err != nil {
		return nil, err
	}
	j := &job{ctx: ctx, model: m, sample: sample, gc: gc}
	if err := s.sched.submit(j); err != nil {
		return nil, err
	}
	s.metrics.promptTokens.Add(int64(n))
	return &admitted{job: j, model: m, promptTokens: n, start: start,
		stream: &textStream{tok: s.models.Session.Tokenizer, stops: g.Stops, keepStop: g.KeepStop}}, nil
}

// decoding is the model's generation config with a request's settings on top. OpenAI's
// temperature 0 means greedy; a temperature above 0 (or TGI's do_sample) samples. Without
// either, generation_config.json decides (greedy for Idefics2).
func decoding(base model.GenerationConfig, s sampling, maxNew int) (model.GenerationConfig, error) {
	c := base
	c.MaxNewTokens = maxNew
	if s.DoSample != nil {
		c.DoSample = *s.DoSample
	}
	if s.Temperature != nil {
		if *s.Temperature == 0 {
			c.DoSample = false
		} else {
			c.Temperature = *s.Temperature
			if s.DoSample == nil {
				c.DoSample = true
			}
		}
	}
	if s.TopP != nil {
		c.TopP = *s.TopP
	}
	if s.TopK != nil && *s.TopK >= 0 {
		c.TopK = *s.TopK
	}
	if s.RepetitionPenalty != nil {
		c.RepetitionPenalty = *s.RepetitionPenalty
	}
	if s.Seed != nil {
		c.Seed = *s.Seed
	}
	if !c.DoSample {
		// Greedy decoding ignores the sampling knobs; fixing them keeps greedy requests in one batch.
		c.Temperature, c.TopK, c.TopP, c.Seed = base.Temperature, base.TopK, base.TopP, 0
	}
	if err := c.Validate(); err != nil {
		return c, badRequest("", "%v", err)
	}
	return c, nil
}

// Finish reasons, in OpenAI's words; TGI's are mapped in tgi.go.
const (
	finishEOS    = "stop"
	finishStop   = "stop_sequence"
	finishLength = "length"
)

// result is a finished answer.
type result struct {
	Text             string
	Tail             string // text released only at the end (held back while it could still change)
	PromptTokens     int
	CompletionTokens int
	Finish           string
}

// emitFunc receives each token as it comes: special is true for an eos (whose text is not part
// of the answer); delta is the text that became final with it (maybe "").
type emitFunc func(tok int32, special bool, delta string) error

// collect waits for a's tokens, passing each to emit, until the answer ends: eos, a stop
// sequence, the token budget, the deadline, or the client going away (ctx).
func (s *Server) collect(ctx context.Context, a *admitted, emit emitFunc) (result, error) {
	res := result{PromptTokens: a.promptTokens}
	var text strings.Builder
	j := a.job
	giveUp := func() {
		if !s.sched.withdraw(j) {
			j.abandon.Store(true)
		}
	}
	for {
		select {
		case ev := <-j.events:
			if ev.done {
				if ev.err != nil {
					return res, s.requestError(ev.err)
				}
				res.Finish = finishLength
				res.Tail = a.stream.flush()
				text.WriteString(res.Tail)
				res.Text = text.String()
				return res, nil
			}
			if res.CompletionTokens == 0 {
				s.metrics.ttft.observe(time.Since(a.start).Seconds())
			}
			res.CompletionTokens++
			if s.eos[ev.tok] {
				j.abandon.Store(true)
				if err := emit(ev.tok, true, ""); err != nil {
					return res, err
				}
				res.Finish, res.Tail = finishEOS, a.stream.flush()
				text.WriteString(res.Tail)
				res.Text = text.String()
				return res, nil
			}
			delta, stop := a.stream.push(ev.tok)
			text.WriteString(delta)
			if err := emit(ev.tok, false, delta); err != nil {
				j.abandon.Store(true)
				return res, err
			}
			if stop {
				j.abandon.Store(true)
				res.Finish, res.Text = finishStop, text.String()
				return res, nil
			}
			if res.CompletionTokens >= j.gc.MaxNewTokens {
				j.abandon.Store(true)
				res.Finish, res.Tail = finishLength, a.stream.flush()
				text.WriteString(res.Tail)
				res.Text = text.String()
				return res, nil
			}
		case <-ctx.Done():
			giveUp()
			return res, s.requestError(ctx.Err())
		}
	}
}

// requestError says why a request ended early.
func (s *Server) requestError(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return errDeadline
	case errors.Is(err, context.Canceled):
		return &apiError{Status: 499, Type: "invalid_request_error", Code: "client_closed_request", Message: "the client closed the request"}
	}
	return asAPIError(err)
}
