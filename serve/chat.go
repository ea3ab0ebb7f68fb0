package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/idefics2/idefics2/data"
)

// chatCompletions is POST /v1/chat/completions as OpenAI defines it.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.metrics.latency.observe(time.Since(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(s.opts.RequestTimeoutS)*time.Second)
	defer cancel()
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := decodeChatRequest(body)
	if err != nil {
		writeError(w, err)
		return
	}
	prompt, err := data.RenderChat(req.Messages, true)
	if err != nil {
		writeError(w, badRequest("messages", "%v", err))
		return
	}
	imageParams := imagePaths(req)
	a, err := s.admit(ctx, genRequest{Model: req.Model, Prompt: prompt, ImageURLs: req.ImageURLs,
		ImageParam: func(i int) string { return imageParams[i] }, MaxTokens: req.MaxTokens, Sampling: req.Sampling, Stops: req.Stop}, start)
	if err != nil {
		writeError(w, err)
		return
	}
	id, created := "chatcmpl-"+randomID(), time.Now().Unix()
	if !req.Stream {
		res, err := s.collect(ctx, a, func(int32, bool, string) error { return nil })
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": a.model.Name,
			"choices": []any{map[string]any{"index": 0, "finish_reason": openAIFinish(res.Finish), "logprobs": nil,
				"message": map[string]any{"role": "assistant", "content": res.Text}}},
			"usage": usage(res),
		})
		return
	}

	sse := newSSE(w)
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": a.model.Name,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}}
	}
	if err := sse.send(chunk(map[string]any{"role": "assistant", "content": ""}, nil)); err != nil {
		a.job.abandon.Store(true)
		s.sched.withdraw(a.job)
		return
	}
	res, err := s.collect(ctx, a, func(_ int32, special bool, delta string) error {
		if delta == "" {
			return nil
		}
		return sse.send(chunk(map[string]any{"content": delta}, nil))
	})
	if err != nil {
		// The status line is sent; the error goes in the stream, as OpenAI's own errors mid-stream do.
		e := asAPIError(err)
		_ = sse.send(map[string]any{"error": map[string]any{"message": e.Message, "type": e.Type, "code": nullable(e.Code)}})
		_ = sse.done()
		return
	}
	if res.Tail != "" {
		_ = sse.send(chunk(map[string]any{"content": res.Tail}, nil))
	}
	_ = sse.send(chunk(map[string]any{}, openAIFinish(res.Finish)))
	if req.IncludeUsage {
		_ = sse.send(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": a.model.Name,
			"choices": []any{}, "usage": usage(res)})
	}
	_ = sse.done()
}

// openAIFinish is OpenAI's finish_reason: a stop sequence and an eos are both "stop".
func openAIFinish(f string) string {
	if f == finishStop {
		return "stop"
	}
	return f
}

func usage(r result) map[string]any {
	return map[string]any{"prompt_tokens": r.PromptTokens, "completion_tokens": r.CompletionTokens,
		"total_tokens": r.PromptTokens + r.CompletionTokens}
}

// imagePaths names each image part of a request for error messages (messages[i].content[j]).
func imagePaths(r *chatRequest) []string {
	var out []string
	for i, m := range r.Messages {
		for j, c := range m.Content {
			if c.Type == "image" {
				out = append(out, fmt.Sprintf("messages[%d].content[%d].image_url", i, j))
			}
		}
	}
	return out
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sse writes Server-Sent Events: one `data: JSON` line and a blank line per event.
type sse struct {
	w http.ResponseWriter
}

func newSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // proxies must not hold tokens back
	w.WriteHeader(http.StatusOK)
	return &sse{w: w}
}

func (s *sse) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.raw("data: " + string(b) + "\n\n")
}

func (s *sse) done() error { return s.raw("data: [DONE]\n\n") }

func (s *sse) raw(line string) error {
	if _, err := s.w.Write([]byte(line)); err != nil {
		return err
	}
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}
