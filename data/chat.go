package data

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Content is one item of a chat message, as in HF's chat format: {"type": "text", "text": ...}
// or {"type": "image"}. Other types are kept but render as nothing, like HF's template.
type Content struct {
	Type string `json:"type"`
	Text string `json:"text,omitempty"`
}

// Message is one chat turn. Content may also be given in JSON as a plain string, which is
// read as one text item.
type Message struct {
	Role    string    `json:"role"`
	Content []Content `json:"content"`
}

func (m *Message) UnmarshalJSON(b []byte) error {
	var raw struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	m.Role = raw.Role
	m.Content = nil
	if len(raw.Content) > 0 && raw.Content[0] == '"' {
		var s string
		if err := json.Unmarshal(raw.Content, &s); err != nil {
			return err
		}
		m.Content = []Content{{Type: "text", Text: s}}
		return nil
	}
	if len(raw.Content) == 0 || string(raw.Content) == "null" {
		return nil
	}
	return json.Unmarshal(raw.Content, &m.Content)
}

// Text and ImageItem build content items.
func Text(s string) Content { return Content{Type: "text", Text: s} }
func ImageItem() Content    { return Content{Type: "image"} }

// IsAssistant reports whether the message's role is the model's own.
func (m Message) IsAssistant() bool { return m.Role == "assistant" }

// span is a byte range [Start, End) of a rendered prompt.
type span struct{ Start, End int }

// renderedChat is the template's text plus, for each assistant turn, the range whose tokens
// are trained: from right after "Assistant:" to the end of its <end_of_utterance>. That is
// exactly what the model has to generate after the generation prompt "Assistant:", the
// space included.
type renderedChat struct {
	Text    string
	Answers []span
}

// RenderChat renders messages with Idefics2's chat template (spec §4.2), byte for byte:
// "Role:" before an image-first message, "Role: " otherwise, text verbatim, "<image>" per
// image item, "<end_of_utterance>\n" after each message, and "Assistant:" as the generation
// prompt.
func RenderChat(msgs []Message, addGenerationPrompt bool) (string, error) {
	r, err := renderChat(msgs, addGenerationPrompt)
	return r.Text, err
}

func renderChat(msgs []Message, addGenerationPrompt bool) (renderedChat, error) {
	var b strings.Builder
	var r renderedChat
	for i, m := range msgs {
		if len(m.Content) == 0 {
			return r, fmt.Errorf("message %d (%s) has no content; the Idefics2 template needs at least one item", i, m.Role)
		}
		b.WriteString(pyCapitalize(m.Role))
		if m.Content[0].Type == "image" {
			b.WriteString(":")
		} else {
			b.WriteString(": ")
		}
		start := b.Len()
		if m.Content[0].Type != "image" {
			start-- // the space belongs to what the model generates after "Assistant:"
		}
		for _, c := range m.Content {
			switch c.Type {
			case "text":
				b.WriteString(c.Text)
			case "image":
				b.WriteString(TokenImage)
			}
		}
		b.WriteString(TokenEndOfUtterance)
		if m.IsAssistant() {
			r.Answers = append(r.Answers, span{start, b.Len()})
		}
		b.WriteString("\n")
	}
	if addGenerationPrompt {
		b.WriteString("Assistant:")
	}
	r.Text = b.String()
	return r, nil
}

// pyCapitalize is Python's str.capitalize: first character title-cased, the rest lowered.
func pyCapitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToTitle(r)) + strings.ToLower(s[n:])
}
