package serve

import (
	"errors"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/data"
)

// FuzzDecodeChatRequest: no body makes the request decoder panic; a body it accepts renders
// with the chat template, with one <image> per image URL; a body it refuses is a 400 naming the
// problem. The committed seeds (testdata/fuzz/FuzzDecodeChatRequest) cover the shapes clients
// send.
func FuzzDecodeChatRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"type":"text","text":"What?"}]}],"stream":true,"stop":["\n"]}`,
		`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user","content":"q2"}],"max_completion_tokens":5,"temperature":0.5,"top_p":0.9,"seed":-3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeChatRequest(body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Message == "" || strings.Contains(ae.Message, "\n\n") {
				t.Fatalf("refusal is not a 400 with a message: %#v", err)
			}
			return
		}
		text, err := data.RenderChat(r.Messages, true)
		if err != nil {
			t.Fatalf("accepted request does not render: %v", err)
		}
		if n := strings.Count(text, data.TokenImage); n != len(r.ImageURLs) {
			t.Fatalf("%d <image> in the prompt for %d image URLs", n, len(r.ImageURLs))
		}
		if r.MaxTokens < 0 || len(r.Stop) > maxStops {
			t.Fatalf("accepted max_tokens %d, %d stops", r.MaxTokens, len(r.Stop))
		}
	})
}

// FuzzDecodeTGIRequest: the same for TGI's body and its markdown images.
func FuzzDecodeTGIRequest(f *testing.F) {
	f.Add([]byte(`{"inputs":"User:![](data:image/png;base64,AAAA)Hi<end_of_utterance>\nAssistant:","parameters":{"max_new_tokens":5,"do_sample":false,"repetition_penalty":1.1}}`))
	f.Add([]byte(`{"inputs":"x","parameters":{"stop":["a"],"details":true,"grammar":null,"seed":3,"temperature":0.5,"top_k":10}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, g, err := decodeTGIRequest(body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("refusal is not a 400: %#v", err)
			}
			return
		}
		if strings.Count(g.Prompt, data.TokenImage) < len(g.ImageURLs) {
			t.Fatalf("%d image URLs, prompt %q", len(g.ImageURLs), g.Prompt)
		}
	})
}
