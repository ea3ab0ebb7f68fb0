package data

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func testTokenizerDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "testdata", "tokenizer", "idefics2")
}

func loadTestTokenizer(t testing.TB, c Compat) *Tokenizer {
	t.Helper()
	tok, err := LoadTokenizer(testTokenizerDir(t), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tok.Close)
	return tok
}

// TestTokenizerReferenceEncodings: the Rust tokenizer behind daulet/tokenizers, driven from Go,
// reproduces the real Mistral ids of the npm package's test cases and the ids of 500 generated
// strings (npm encoder == Python tokenizers), in both compat modes.
func TestTokenizerReferenceEncodings(t *testing.T) {
	var ref struct {
		Cases []struct {
			Text   string  `json:"text"`
			IDs    []int32 `json:"ids"`
			IDsT5  []int32 `json:"ids_transformers5"`
			Source string  `json:"from"`
		} `json:"cases"`
	}
	b, err := os.ReadFile(filepath.Join(testTokenizerDir(t), "reference_encodings.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	trained, t5 := loadTestTokenizer(t, CompatTrained), loadTestTokenizer(t, CompatTransformers5)
	same, diffModes := 0, 0
	for _, c := range ref.Cases {
		if got := trained.Encode(c.Text, true); !slices.Equal(got, c.IDs) {
			t.Errorf("trained %q (%s): got %v want %v", c.Text, c.Source, got, c.IDs)
		} else {
			same++
		}
		if got := t5.Encode(c.Text, true); !slices.Equal(got, c.IDsT5) {
			t.Errorf("transformers5 %q: got %v want %v", c.Text, got, c.IDsT5)
		}
		if !slices.Equal(c.IDs, c.IDsT5) {
			diffModes++
		}
		if c.Source == "npm test case" {
			if got := trained.Decode(c.IDs, true); got != c.Text {
				t.Errorf("decode %v: got %q want %q", c.IDs, got, c.Text)
			}
		}
	}
	t.Logf("%d/%d encodings identical; %d strings tokenize differently under transformers 5", same, len(ref.Cases), diffModes)
}

func TestTokenizerSpecialTokens(t *testing.T) {
	tok := loadTestTokenizer(t, CompatTrained)
	if tok.BOS != 1 || tok.EOS != 2 || tok.Pad != 0 || tok.FakeImage != 32000 || tok.Image != 32001 || tok.EndOfUtterance != 32002 {
		t.Fatalf("ids: bos %d eos %d pad %d fake %d image %d eou %d", tok.BOS, tok.EOS, tok.Pad, tok.FakeImage, tok.Image, tok.EndOfUtterance)
	}
	if tok.VocabSize() != 32003 {
		t.Errorf("vocab size %d, want 32003", tok.VocabSize())
	}
	ids := tok.Encode("User:<image>What?<end_of_utterance>", true)
	want := []int32{1, 1247, 28747, 32001, 1824, 28804, 32002} // "What" after a special token gets "▁"
	if !slices.Equal(ids, want) {
		t.Errorf("got %v want %v", ids, want)
	}
	if got := tok.Encode("hi", false); got[0] == 1 {
		t.Errorf("addSpecial=false must not add BOS: %v", got)
	}
}
