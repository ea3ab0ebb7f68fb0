package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/idefics2/idefics2/data"
)

// chatRequest is an OpenAI chat-completions request, checked and reduced to what the model
// takes: the chat in Idefics2's message form (an image part becomes an image item) and the
// image URLs in prompt order.
type chatRequest struct {
	Model        string
	Messages     []data.Message
	ImageURLs    []string
	MaxTokens    int // 0: the server's default
	Sampling     sampling
	Stop         []string
	Stream       bool
	IncludeUsage bool
}

// sampling is what a request asks of the decoder; nil fields keep the model's
// generation_config.json values.
type sampling struct {
	Temperature       *float64
	TopP              *float64
	TopK              *int
	RepetitionPenalty *float64
	Seed              *uint64
	DoSample          *bool // TGI's do_sample; OpenAI's is implied by temperature > 0
}

// wireChat is the JSON of a request as clients send it.
type wireChat struct {
	Model               string          `json:"model"`
	Messages            []wireMessage   `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`              // vLLM's extension
	RepetitionPenalty   *float64        `json:"repetition_penalty"` // vLLM's extension
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N                *int            `json:"n"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	Logprobs         *bool           `json:"logprobs"`
	Tools            json.RawMessage `json:"tools"`
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type wirePart struct {
	Type     string          `json:"type"`
	Text     *string         `json:"text"`
	ImageURL json.RawMessage `json:"image_url"`
}

// maxStops is OpenAI's limit on stop sequences.
const maxStops = 4

// decodeChatRequest reads and checks a chat-completions body. Every failure is a 400 naming the
// field; no input makes it panic (FuzzDecodeChatRequest).
func decodeChatRequest(body []byte) (*chatRequest, error) {
	var w wireChat
	if err := strictJSON(body, &w); err != nil {
		return nil, err
	}
	r := &chatRequest{Model: w.Model, Stream: w.Stream}
	if w.StreamOptions != nil {
		r.IncludeUsage = w.StreamOptions.IncludeUsage
	}
	if len(w.Messages) == 0 {
		return nil, badRequest("messages", "messages must be a non-empty list")
	}
	for i, m := range w.Messages {
		msg, urls, err := convertMessage(i, m)
		if err != nil {
			return nil, err
		}
		r.Messages = append(r.Messages, msg)
		r.ImageURLs = append(r.ImageURLs, urls...)
	}
	switch {
	case w.N != nil && *w.N != 1:
		return nil, badRequest("n", "n = %d: this server returns one choice per request (n must be 1)", *w.N)
	case w.FrequencyPenalty != nil && *w.FrequencyPenalty != 0:
		return nil, badRequest("frequency_penalty", "frequency_penalty is not supported (use repetition_penalty)")
	case w.PresencePenalty != nil && *w.PresencePenalty != 0:
		return nil, badRequest("presence_penalty", "presence_penalty is not supported (use repetition_penalty)")
	case w.Logprobs != nil && *w.Logprobs:
		return nil, badRequest("logprobs", "logprobs are not supported")
	case len(w.Tools) > 0 && string(w.Tools) != "null" && string(w.Tools) != "[]":
		return nil, badRequest("tools", "tools are not supported by Idefics2")
	}
	maxTokens := w.MaxCompletionTokens
	param := "max_completion_tokens"
	if maxTokens == nil {
		maxTokens, param = w.MaxTokens, "max_tokens"
	}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return nil, badRequest(param, "%s = %d: must be at least 1", param, *maxTokens)
		}
		r.MaxTokens = *maxTokens
	}
	s := &r.Sampling
	s.Temperature, s.TopP, s.TopK, s.RepetitionPenalty = w.Temperature, w.TopP, w.TopK, w.RepetitionPenalty
	if w.Seed != nil {
		seed := uint64(*w.Seed)
		s.Seed = &seed
	}
	if err := s.check(2); err != nil {
		return nil, err
	}
	var err error
	if r.Stop, err = decodeStop(w.Stop); err != nil {
		return nil, err
	}
	return r, nil
}

// strictJSON decodes exactly one JSON value into v, with a 400 naming the problem.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		if err == io.EOF {
			return badRequest("", "the request body is empty; send a JSON object")
		}
		return badRequest("", "the request body is not valid JSON for this endpoint: %v", err)
	}
	if dec.More() {
		return badRequest("", "the request body holds more than one JSON value")
	}
	return nil
}

// check refuses values the decoder cannot use; maxTemperature is the API's upper bound.
func (s *sampling) check(maxTemperature float64) error {
	finite := func(p *float64) bool { return p == nil || (!math.IsNaN(*p) && !math.IsInf(*p, 0)) }
	switch {
	case s.Temperature != nil && (!finite(s.Temperature) || *s.Temperature < 0 || *s.Temperature > maxTemperature):
		return badRequest("temperature", "temperature = %g: must be between 0 and %g", *s.Temperature, maxTemperature)
	case s.TopP != nil && (!finite(s.TopP) || *s.TopP <= 0 || *s.TopP > 1):
		return badRequest("top_p", "top_p = %g: must be in (0, 1]", *s.TopP)
	case s.TopK != nil && *s.TopK < -1:
		return badRequest("top_k", "top_k = %d: must be ≥ 0 (or -1 for none)", *s.TopK)
	case s.RepetitionPenalty != nil && (!finite(s.RepetitionPenalty) || *s.RepetitionPenalty <= 0):
		return badRequest("repetition_penalty", "repetition_penalty = %g: must be > 0", *s.RepetitionPenalty)
	}
	return nil
}

// decodeStop reads OpenAI's stop: null, a string or a list of up to 4 strings.
func decodeStop(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest("stop", "stop must be a string or a list of strings")
	}
	if len(many) > maxStops {
		return nil, badRequest("stop", "stop has %d sequences; at most %d", len(many), maxStops)
	}
	var out []string
	for _, s := range many {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// convertMessage maps one OpenAI message onto Idefics2's template roles and items.
func convertMessage(i int, m wireMessage) (data.Message, []string, error) {
	param := fmt.Sprintf("messages[%d]", i)
	role := m.Role
	switch role {
	case "system", "user", "assistant":
	case "developer":
		role = "system" // OpenAI's newer name for the system role
	case "":
		return data.Message{}, nil, badRequest(param+".role", "%s has no role (system, user or assistant)", param)
	default:
		return data.Message{}, nil, badRequest(param+".role", "%s has role %q; this model knows system, user and assistant", param, truncate(role, 40))
	}
	msg := data.Message{Role: role}
	raw := bytes.TrimSpace(m.Content)
	if len(raw) == 0 || string(raw) == "null" {
		return msg, nil, badRequest(param+".content", "%s has no content", param)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return msg, nil, badRequest(param+".content", "%s: content is not a valid string", param)
		}
		if strings.Contains(s, data.TokenImage) {
			return msg, nil, badRequest(param+".content", "%s: the text holds the literal %s token; send images as image_url parts", param, data.TokenImage)
		}
		msg.Content = []data.Content{data.Text(s)}
		return msg, nil, nil
	}
	var parts []wirePart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return msg, nil, badRequest(param+".content", "%s: content must be a string or a list of parts", param)
	}
	if len(parts) == 0 {
		return msg, nil, badRequest(param+".content", "%s has an empty content list", param)
	}
	var urls []string
	for j, p := range parts {
		pp := fmt.Sprintf("%s.content[%d]", param, j)
		switch p.Type {
		case "text":
			if p.Text == nil {
				return msg, nil, badRequest(pp, "%s is a text part without text", pp)
			}
			if strings.Contains(*p.Text, data.TokenImage) {
				return msg, nil, badRequest(pp, "%s holds the literal %s token; send images as image_url parts", pp, data.TokenImage)
			}
			msg.Content = append(msg.Content, data.Text(*p.Text))
		case "image_url":
			url, err := imageURLOf(p.ImageURL)
			if err != nil {
				return msg, nil, badRequest(pp+".image_url", "%s: %v", pp, err)
			}
			msg.Content = append(msg.Content, data.ImageItem())
			urls = append(urls, url)
		default:
			return msg, nil, badRequest(pp+".type", "%s has type %q; text and image_url are supported", pp, truncate(p.Type, 40))
		}
	}
	return msg, urls, nil
}

// imageURLOf reads {"url": "..."} (OpenAI) or a bare string (accepted by vLLM and others).
func imageURLOf(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("image_url is missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == "" {
			return "", fmt.Errorf("image_url is empty")
		}
		return s, nil
	}
	var obj struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.URL == "" {
		return "", fmt.Errorf(`image_url must be {"url": "data:image/...;base64,..."}`)
	}
	return obj.URL, nil
}

// truncate keeps error lines short whatever a client sends.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
