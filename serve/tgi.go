package serve

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/idefics2/idefics2/data"
)

// TGI's generate API (text-generation-inference's /generate, /generate_stream, and / for its
// Python client), so that the model card's client code runs unchanged: images are markdown
// `![](URL)` in the prompt, which is Idefics2's text with turns separated by
// "<end_of_utterance>\n".

type tgiRequest struct {
	Inputs     string         `json:"inputs"`
	Parameters *tgiParameters `json:"parameters"`
	Stream     bool           `json:"stream"`
}

type tgiParameters struct {
	MaxNewTokens      *int     `json:"max_new_tokens"`
	DoSample          *bool    `json:"do_sample"`
	Temperature       *float64 `json:"temperature"`
	TopK              *int     `json:"top_k"`
	TopP              *float64 `json:"top_p"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`
	FrequencyPenalty  *float64 `json:"frequency_penalty"`
	Seed              *int64   `json:"seed"`
	Stop              []string `json:"stop"`
	Details           bool     `json:"details"`
	ReturnFullText    bool     `json:"return_full_text"`
	BestOf            *int     `json:"best_of"`
	AdapterID         string   `json:"adapter_id"`
	Grammar           any      `json:"grammar"`
	TopNTokens        *int     `json:"top_n_tokens"`
	DecoderDetails    bool     `json:"decoder_input_details"`
	Truncate          *int     `json:"truncate"`
	TypicalP          *float64 `json:"typical_p"`
	Watermark         bool     `json:"watermark"`
}

// markdownImage is TGI's image syntax inside inputs: ![alt](URL).
var markdownImage = regexp.MustCompile(`!\[[^\]]*\]\(([^)\s]*)\)`)

// decodeTGIRequest reads and checks a TGI body into what the model takes.
func decodeTGIRequest(body []byte) (*tgiRequest, genRequest, error) {
	var r tgiRequest
	if err := strictJSON(body, &r); err != nil {
		return nil, genRequest{}, err
	}
	if r.Inputs == "" {
		return nil, genRequest{}, badRequest("inputs", "inputs must be a non-empty string")
	}
	p := r.Parameters
	if p == nil {
		p = &tgiParameters{}
	}
	switch {
	case p.BestOf != nil && *p.BestOf > 1:
		return nil, genRequest{}, badRequest("best_of", "best_of > 1 is not supported")
	case p.Grammar != nil:
		return nil, genRequest{}, badRequest("grammar", "grammar is not supported")
	case p.FrequencyPenalty != nil && *p.FrequencyPenalty != 0:
		return nil, genRequest{}, badRequest("frequency_penalty", "frequency_penalty is not supported (use repetition_penalty)")
	case p.TypicalP != nil:
		return nil, genRequest{}, badRequest("typical_p", "typical_p is not supported")
	case p.Watermark:
		return nil, genRequest{}, badRequest("watermark", "watermark is not supported")
	case len(p.Stop) > maxStops:
		return nil, genRequest{}, badRequest("stop", "stop has %d sequences; at most %d", len(p.Stop), maxStops)
	}
	g := genRequest{Model: p.AdapterID, KeepStop: true}
	var urls []string
	g.Prompt = markdownImage.ReplaceAllStringFunc(r.Inputs, func(m string) string {
		urls = append(urls, markdownImage.FindStringSubmatch(m)[1])
		return data.TokenImage
	})
	g.ImageURLs = urls
	g.ImageParam = func(i int) string { return fmt.Sprintf("inputs image %d", i) }
	if p.MaxNewTokens != nil {
		if *p.MaxNewTokens < 1 {
			return nil, genRequest{}, badRequest("max_new_tokens", "max_new_tokens = %d: must be at least 1", *p.MaxNewTokens)
		}
		g.MaxTokens = *p.MaxNewTokens
	}
	s := &g.Sampling
	s.DoSample, s.TopK, s.TopP, s.RepetitionPenalty = p.DoSample, p.TopK, p.TopP, p.RepetitionPenalty
	if p.Temperature != nil {
		if *p.Temperature <= 0 {
			return nil, genRequest{}, badRequest("temperature", "temperature = %g: must be > 0", *p.Temperature)
		}
		s.Temperature = p.Temperature
		if p.DoSample == nil {
			// TGI samples only when asked: a temperature alone does not switch greedy off.
			f := false
			s.DoSample = &f
		}
	}
	if p.Seed != nil {
		seed := uint64(*p.Seed)
		s.Seed = &seed
	}
	if err := s.check(100); err != nil {
		return nil, genRequest{}, err
	}
	for _, st := range p.Stop {
		if st != "" {
			g.Stops = append(g.Stops, st)
		}
	}
	return &r, g, nil
}

func (s *Server) tgiGenerate(w http.ResponseWriter, r *http.Request)       { s.tgi(w, r, false, false) }
func (s *Server) tgiGenerateStream(w http.ResponseWriter, r *http.Request) { s.tgi(w, r, true, false) }

// tgiCompat is TGI's POST /: the body's stream field chooses, and a non-streamed answer is a
// one-element list.
func (s *Server) tgiCompat(w http.ResponseWriter, r *http.Request) { s.tgi(w, r, false, true) }

func (s *Server) tgiInfo(w http.ResponseWriter, r *http.Request) {
	base := s.models.list[0]
	writeJSON(w, http.StatusOK, map[string]any{"model_id": base.Name, "model_dtype": "", "model_device_type": "",
		"max_input_tokens": s.opts.MaxPromptTokens, "max_total_tokens": base.Config.Text.MaxPositionEmbeddings,
		"max_concurrent_requests": s.opts.QueueSize, "max_batch_size": s.opts.MaxBatch, "version": "idefics2-serve"})
}

// tgiError writes TGI's error body, {"error": ..., "error_type": ...}.
func tgiError(w http.ResponseWriter, err error) {
	e := asAPIError(err)
	kind := "validation"
	switch e.Status {
	case http.StatusTooManyRequests:
		kind = "overloaded"
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusInternalServerError:
		kind = "generation"
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	writeJSON(w, e.Status, map[string]any{"error": e.Message, "error_type": kind})
}

func tgiFinish(f string) string {
	if f == finishEOS {
		return "eos_token"
	}
	return f
}

func (s *Server) tgi(w http.ResponseWriter, r *http.Request, stream, compat bool) {
	start := time.Now()
	defer func() { s.metrics.latency.observe(time.Since(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(s.opts.RequestTimeoutS)*time.Second)
	defer cancel()
	body, err := s.readBody(w, r)
	if err != nil {
		tgiError(w, err)
		return
	}
	req, g, err := decodeTGIRequest(body)
	if err != nil {
		tgiError(w, err)
		return
	}
	if compat {
		stream = req.Stream
	}
	a, err := s.admit(ctx, g, start)
	if err != nil {
		tgiError(w, err)
		return
	}
	var seed any
	if a.job.gc.DoSample {
		seed = a.job.gc.Seed
	}
	tok := s.models.Session.Tokenizer
	token := func(id int32, special bool, text string) map[string]any {
		if special {
			text = tok.Decode([]int32{id}, false)
		}
		return map[string]any{"id": id, "text": text, "logprob": nil, "special": special}
	}
	if !stream {
		var tokens []map[string]any
		res, err := s.collect(ctx, a, func(id int32, special bool, delta string) error {
			tokens = append(tokens, token(id, special, delta))
			return nil
		})
		if err != nil {
			tgiError(w, err)
			return
		}
		text := res.Text
		if req.Parameters != nil && req.Parameters.ReturnFullText {
			text = req.Inputs + text
		}
		if len(tokens) > 0 && res.Tail != "" {
			tokens[len(tokens)-1]["text"] = tokens[len(tokens)-1]["text"].(string) + res.Tail
		}
		out := map[string]any{"generated_text": text}
		if req.Parameters != nil && req.Parameters.Details {
			out["details"] = map[string]any{"finish_reason": tgiFinish(res.Finish), "generated_tokens": res.CompletionTokens,
				"seed": seed, "prefill": []any{}, "tokens": tokens, "top_tokens": nil, "best_of_sequences": nil}
		}
		if compat {
			writeJSON(w, http.StatusOK, []any{out})
		} else {
			writeJSON(w, http.StatusOK, out)
		}
		return
	}

	// Streaming: each event is one token; the last one also carries generated_text and details.
	// One token is held so that the last can be told apart, and the text released at the end
	// goes with it.
	sse := newSSE(w)
	var held map[string]any
	res, err := s.collect(ctx, a, func(id int32, special bool, delta string) error {
		var err error
		if held != nil {
			err = sse.send(map[string]any{"token": held, "top_tokens": nil, "generated_text": nil, "details": nil})
		}
		held = token(id, special, delta)
		return err
	})
	if err != nil {
		e := asAPIError(err)
		_ = sse.send(map[string]any{"error": e.Message, "error_type": "generation"})
		return
	}
	if held == nil {
		return
	}
	held["text"] = held["text"].(string) + res.Tail
	text := res.Text
	if req.Parameters != nil && req.Parameters.ReturnFullText {
		text = req.Inputs + text
	}
	_ = sse.send(map[string]any{"token": held, "top_tokens": nil, "generated_text": text,
		"details": map[string]any{"finish_reason": tgiFinish(res.Finish), "generated_tokens": res.CompletionTokens, "seed": seed}})
}
