package serve

import (
	"strings"

	"github.com/idefics2/idefics2/data"
)

// textStream turns a row's tokens into text deltas as they arrive. The whole answer is decoded
// again at each token (a token alone may decode differently from the same token in context:
// SentencePiece's leading space, byte-fallback pieces of one character), and text is held back
// while it might still change: an unfinished UTF-8 character (U+FFFD) or the beginning of a
// stop sequence.
type textStream struct {
	tok      *data.Tokenizer
	stops    []string
	keepStop bool // TGI keeps the stop sequence in the text; OpenAI drops it
	ids      []int32
	text     string // the text so far, as decoded
	sent     int    // bytes of text already handed out
}

// push adds one generated token (not an eos) and returns the text that is now final; stop is
// true when a stop sequence ended the answer (the text up to it, or through it, is returned).
func (t *textStream) push(id int32) (delta string, stop bool) {
	t.ids = append(t.ids, id)
	t.text = t.tok.Decode(t.ids, true)
	if t.sent > len(t.text) {
		t.sent = len(t.text)
	}
	if cut, end, ok := t.findStop(); ok {
		if t.keepStop {
			cut = end
		}
		if cut < t.sent {
			cut = t.sent
		}
		delta, t.sent, t.text = t.text[t.sent:cut], cut, t.text[:cut]
		return delta, true
	}
	safe := len(t.text) - t.heldBack()
	if safe <= t.sent {
		return "", false
	}
	delta, t.sent = t.text[t.sent:safe], safe
	return delta, false
}

// flush returns what was held back once the answer has ended without a stop sequence.
func (t *textStream) flush() string {
	d := t.text[t.sent:]
	t.sent = len(t.text)
	return strings.TrimSuffix(d, "\uFFFD")
}

// findStop finds the earliest stop sequence in the text not yet handed out (plus the overlap a
// sequence may have with what was).
func (t *textStream) findStop() (start, end int, ok bool) {
	start = -1
	for _, s := range t.stops {
		from := max(0, t.sent-len(s)+1)
		if i := strings.Index(t.text[from:], s); i >= 0 && (start < 0 || from+i < start) {
			start, end = from+i, from+i+len(s)
		}
	}
	return start, end, start >= 0
}

// heldBack is how many trailing bytes may still change: a replacement character that more
// bytes will complete, or the longest suffix that begins a stop sequence.
func (t *textStream) heldBack() int {
	if strings.HasSuffix(t.text, "\uFFFD") {
		return len(t.text) - strings.LastIndex(t.text, "\uFFFD")
	}
	n := 0
	for _, s := range t.stops {
		for k := min(len(s)-1, len(t.text)); k > n; k-- {
			if strings.HasSuffix(t.text, s[:k]) {
				n = k
				break
			}
		}
	}
	return n
}
