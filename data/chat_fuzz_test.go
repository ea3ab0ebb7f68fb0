package data

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzChatTemplate: chat messages as JSON (HF's format: content a string or a list of typed
// items) render with the chat template or fail with an error, never a panic; a rendering holds
// one <image> per image item. Seeds: testdata/fuzz/FuzzChatTemplate.
func FuzzChatTemplate(f *testing.F) {
	f.Add([]byte(`[{"role":"user","content":[{"type":"image"},{"type":"text","text":"What is it?"}]},{"role":"assistant","content":[{"type":"text","text":"A cat."}]}]`), true)
	f.Add([]byte(`[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]`), false)
	f.Add([]byte(`[{"role":"user","content":[{"type":"text","text":"<image><end_of_utterance>"}]}]`), true)
	f.Fuzz(func(t *testing.T, b []byte, addGenerationPrompt bool) {
		var msgs []Message
		if json.Unmarshal(b, &msgs) != nil {
			return
		}
		text, err := RenderChat(msgs, addGenerationPrompt)
		if err != nil {
			return
		}
		images, literal := 0, 0
		for _, m := range msgs {
			for _, c := range m.Content {
				switch c.Type { // the template writes text and image items only, as HF's Jinja does
				case "image":
					images++
				case "text":
					literal += strings.Count(c.Text, TokenImage)
				}
			}
		}
		if got := strings.Count(text, TokenImage); got != images+literal {
			t.Fatalf("%d image items and %d literal placeholders rendered as %d <image>: %q", images, literal, got, text)
		}
	})
}
