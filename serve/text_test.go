package serve

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/internal/fixtures"
)

// Streamed text deltas add up to the decoded answer; a stop sequence cuts it (kept for TGI,
// dropped for OpenAI) even when it spans tokens, and text that might begin one is held back.
func TestTextStream(t *testing.T) {
	root, err := fixtures.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := data.LoadTokenizer(filepath.Join(root, "testdata", "tokenizer", "idefics2"), data.CompatTrained)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	answer := " The total is 42 €, paid in full."
	ids := tok.Encode(answer, false)
	run := func(stops []string, keep bool) (string, bool) {
		ts := &textStream{tok: tok, stops: stops, keepStop: keep}
		var b strings.Builder
		for _, id := range ids {
			d, stop := ts.push(id)
			b.WriteString(d)
			if stop {
				return b.String(), true
			}
		}
		b.WriteString(ts.flush())
		return b.String(), false
	}
	full := tok.Decode(ids, true)
	if got, stopped := run(nil, false); got != full || stopped {
		t.Errorf("no stops: %q, want %q", got, full)
	}
	if got, stopped := run([]string{"42 €"}, false); got != strings.Split(full, "42 €")[0] || !stopped {
		t.Errorf("OpenAI stop: %q", got)
	}
	if got, _ := run([]string{"42 €", "total"}, true); got != full[:strings.Index(full, "total")+len("total")] {
		t.Errorf("TGI stop (earliest wins, kept): %q", got)
	}
	if got, stopped := run([]string{"full!"}, false); got != full || stopped {
		t.Errorf("a stop that only begins to match is released at the end: %q", got)
	}
}
