package cauldron

import (
	"encoding/json"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
)

// messagesReader returns a reader for a column of HF chat messages, stored either as nested
// Arrow (what datasets writes for a list of dicts) or as a JSON string.
func messagesReader(name string, dt arrow.DataType) (func(arrow.Array, int) ([]Message, error), bool) {
	if isText(dt) {
		return func(a arrow.Array, i int) ([]Message, error) {
			s, ok := textAt(a, i)
			if !ok {
				return nil, skipf(ReasonNullField, "column %q is null", name)
			}
			return parseChatJSON([]byte(s))
		}, true
	}
	elem, ok := listElem(dt)
	if !ok || !structHasText(elem, "role") {
		return nil, false
	}
	st, _ := structType(elem)
	cf, ok := st.FieldByName("content")
	if !ok {
		return nil, false
	}
	contentIsText := isText(cf.Type)
	if !contentIsText {
		ce, isList := listElem(cf.Type)
		if !isList || !structHasText(ce, "type") {
			return nil, false
		}
	}
	return func(a arrow.Array, i int) ([]Message, error) {
		vals, s, e, ok := listAt(a, i)
		if !ok {
			return nil, skipf(ReasonNullField, "column %q is null", name)
		}
		if e == s {
			return nil, skipf(ReasonEmptyField, "column %q is empty", name)
		}
		roles, contents := field(vals, "role"), field(vals, "content")
		msgs := make([]Message, 0, e-s)
		for j := s; j < e; j++ {
			role, ok := textAt(roles, j)
			if vals.IsNull(j) || !ok {
				return nil, skipf(ReasonNullField, "%s[%d].role is null", name, j-s)
			}
			m := Message{Role: role}
			if contentIsText {
				t, ok := textAt(contents, j)
				if !ok {
					return nil, skipf(ReasonNullField, "%s[%d].content is null", name, j-s)
				}
				m.Content = []Content{{Type: "text", Text: t}}
			} else {
				items, cs, ce, ok := listAt(contents, j)
				if !ok {
					return nil, skipf(ReasonNullField, "%s[%d].content is null", name, j-s)
				}
				types, texts := field(items, "type"), field(items, "text")
				for k := cs; k < ce; k++ {
					typ, ok := textAt(types, k)
					if !ok {
						return nil, skipf(ReasonNullField, "%s[%d].content[%d].type is null", name, j-s, k-cs)
					}
					c := Content{Type: typ}
					if typ == "text" {
						if c.Text, ok = textAt(texts, k); !ok {
							return nil, skipf(ReasonNullField, "%s[%d].content[%d].text is null", name, j-s, k-cs)
						}
					}
					m.Content = append(m.Content, c)
				}
			}
			msgs = append(msgs, m)
		}
		return msgs, checkChat(msgs)
	}, true
}

// jsonMessage accepts both content forms of HF chat JSON: a plain string or a list of items.
type jsonMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type jsonContent struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

func parseChatJSON(b []byte) ([]Message, error) {
	var raw []jsonMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, Skip(ReasonBadJSON, err)
	}
	return chatFromJSON(raw)
}

func chatFromJSON(raw []jsonMessage) ([]Message, error) {
	if len(raw) == 0 {
		return nil, skipf(ReasonEmptyField, "messages are empty")
	}
	msgs := make([]Message, 0, len(raw))
	for j, r := range raw {
		if r.Role == "" {
			return nil, skipf(ReasonNullField, "messages[%d].role is missing", j)
		}
		m := Message{Role: r.Role}
		var s string
		var items []jsonContent
		switch {
		case len(r.Content) == 0 || string(r.Content) == "null":
			return nil, skipf(ReasonNullField, "messages[%d].content is null", j)
		case json.Unmarshal(r.Content, &s) == nil:
			m.Content = []Content{{Type: "text", Text: s}}
		case json.Unmarshal(r.Content, &items) == nil:
			for k, it := range items {
				c := Content{Type: it.Type}
				if it.Type == "text" {
					if it.Text == nil {
						return nil, skipf(ReasonNullField, "messages[%d].content[%d].text is null", j, k)
					}
					c.Text = *it.Text
				}
				m.Content = append(m.Content, c)
			}
		default:
			return nil, Skip(ReasonBadJSON, fmt.Errorf("messages[%d].content is neither a string nor a list", j))
		}
		msgs = append(msgs, m)
	}
	return msgs, checkChat(msgs)
}

// checkChat insists on something to learn: at least one assistant message with text.
func checkChat(msgs []Message) error {
	for _, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		for _, c := range m.Content {
			if c.Type == "text" && c.Text != "" {
				return nil
			}
		}
	}
	return skipf(ReasonEmptyField, "messages have no assistant text")
}
