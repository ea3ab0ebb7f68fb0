package cauldron

import "strings"

// Message is one turn of an HF-style chat: a role ("user", "assistant", "system") and content
// items. It mirrors the JSON that HF processors' apply_chat_template takes, so a record's
// messages can be written out and fed to the Python reference unchanged.
type Message struct {
	Role    string    `json:"role"`
	Content []Content `json:"content"`
}

// Content is one item of a message: Type "text" with Text, or Type "image" (the next image of
// the record, in order).
type Content struct {
	Type string `json:"type"`
	Text string `json:"text,omitempty"`
}

// ImagePlaceholder is the literal some datasets put in user text where an image belongs.
const ImagePlaceholder = "<image>"

// Messages returns the whole conversation, for training. The Cauldron's recipe (spec §6.1):
// one user turn per texts entry, every image at the start of the first user turn, and the
// assistant field as the answer. When user texts already carry <image> placeholders, images go
// where the placeholders are instead, so the dataset's own placement wins.
func (r *Record) Messages() []Message {
	if len(r.Chat) > 0 {
		return cloneMessages(r.Chat)
	}
	turns := r.Turns
	if len(turns) == 0 && r.Question != "" {
		turns = []Turn{{User: r.Question}}
	}
	placed := placeholderCount(turns) > 0
	var out []Message
	for i, t := range turns {
		var user []Content
		switch {
		case placed:
			user = splitPlaceholders(t.User)
		case i == 0:
			for range r.Images {
				user = append(user, Content{Type: "image"})
			}
			user = append(user, Content{Type: "text", Text: t.User})
		default:
			user = []Content{{Type: "text", Text: t.User}}
		}
		out = append(out, Message{Role: "user", Content: user})
		if t.Assistant != "" {
			out = append(out, Message{Role: "assistant", Content: []Content{{Type: "text", Text: t.Assistant}}})
		}
	}
	return out
}

// Prompt returns the conversation without its final assistant answer: what a model is given
// to generate that answer (evaluation, or checking a training sample by hand).
func (r *Record) Prompt() []Message {
	m := r.Messages()
	if n := len(m); n > 0 && m[n-1].Role == "assistant" {
		m = m[:n-1]
	}
	return m
}

func placeholderCount(turns []Turn) int {
	n := 0
	for _, t := range turns {
		n += strings.Count(t.User, ImagePlaceholder)
	}
	return n
}

func chatImageCount(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		for _, c := range m.Content {
			if c.Type == "image" {
				n++
			}
		}
	}
	return n
}

// splitPlaceholders turns "a<image>b" into text "a", image, text "b", dropping empty texts so
// that "<image>Q" starts with the image exactly as the chat template expects.
func splitPlaceholders(s string) []Content {
	var out []Content
	parts := strings.Split(s, ImagePlaceholder)
	for i, p := range parts {
		if i > 0 {
			out = append(out, Content{Type: "image"})
		}
		if p != "" {
			out = append(out, Content{Type: "text", Text: p})
		}
	}
	return out
}

func cloneMessages(in []Message) []Message {
	out := make([]Message, len(in))
	for i, m := range in {
		out[i] = Message{Role: m.Role, Content: append([]Content(nil), m.Content...)}
	}
	return out
}
