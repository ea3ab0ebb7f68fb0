package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/daulet/tokenizers"
)

// Special token strings of Idefics2 (spec §1.4).
const (
	TokenFakeImage      = "<fake_token_around_image>"
	TokenImage          = "<image>"
	TokenEndOfUtterance = "<end_of_utterance>"
)

// Tokenizer wraps an HF tokenizer.json (run by the Rust `tokenizers` library through
// daulet/tokenizers) with the settings of tokenizer_config.json that HF applies around it.
// It is safe for concurrent use.
type Tokenizer struct {
	tk     *tokenizers.Tokenizer
	compat Compat

	AddBOS, AddEOS bool
	BOS, EOS, Pad  int32
	Unk            int32
	// Idefics2's added tokens; -1 when the tokenizer lacks them.
	FakeImage, Image, EndOfUtterance int32
}

// TokenizerConfig is the part of tokenizer_config.json that changes ids (HF writes the
// special tokens either as strings or as {"content": ...} objects).
type TokenizerConfig struct {
	AddBOS *bool `json:"add_bos_token"`
	AddEOS *bool `json:"add_eos_token"`
	Legacy *bool `json:"legacy"`
	BOS    any   `json:"bos_token"`
	EOS    any   `json:"eos_token"`
	Pad    any   `json:"pad_token"`
	Unk    any   `json:"unk_token"`
}

// tokenString accepts both spellings HF writes: "<s>" or {"content": "<s>", ...}.
func tokenString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case map[string]any:
		if s, ok := t["content"].(string); ok {
			return s
		}
	}
	return ""
}

// LoadTokenizer reads dir/tokenizer.json and, when present, dir/tokenizer_config.json.
func LoadTokenizer(dir string, compat Compat) (*Tokenizer, error) {
	path := filepath.Join(dir, "tokenizer.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var cfg TokenizerConfig
	if b, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", filepath.Join(dir, "tokenizer_config.json"), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := NewTokenizer(raw, cfg, compat)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// NewTokenizer builds a tokenizer from tokenizer.json bytes and an already parsed config.
func NewTokenizer(tokenizerJSON []byte, cfg TokenizerConfig, compat Compat) (*Tokenizer, error) {
	if compat == CompatTransformers5 {
		legacy := cfg.Legacy != nil && *cfg.Legacy
		var err error
		if tokenizerJSON, err = asTransformers5Pipeline(tokenizerJSON, legacy); err != nil {
			return nil, err
		}
	}
	tk, err := tokenizers.FromBytes(tokenizerJSON)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{tk: tk, compat: compat, AddBOS: true}
	if cfg.AddBOS != nil {
		t.AddBOS = *cfg.AddBOS
	}
	if cfg.AddEOS != nil {
		t.AddEOS = *cfg.AddEOS
	}
	name := func(v any, def string) string {
		if s := tokenString(v); s != "" {
			return s
		}
		return def
	}
	t.BOS = t.TokenID(name(cfg.BOS, "<s>"))
	t.EOS = t.TokenID(name(cfg.EOS, "</s>"))
	t.Unk = t.TokenID(name(cfg.Unk, "<unk>"))
	// Idefics2 pads with <unk> (id 0); a config without pad_token gets the same.
	t.Pad = t.TokenID(name(cfg.Pad, name(cfg.Unk, "<unk>")))
	t.FakeImage = t.TokenID(TokenFakeImage)
	t.Image = t.TokenID(TokenImage)
	t.EndOfUtterance = t.TokenID(TokenEndOfUtterance)
	if t.AddBOS && t.BOS < 0 {
		tk.Close()
		return nil, errors.New("add_bos_token is set but the BOS token is not in the vocabulary")
	}
	return t, nil
}

// asTransformers5Pipeline rewrites tokenizer.json the way transformers 5's LlamaTokenizer
// rebuilds it: no normalizer, Metaspace pre-tokenizer, and the Llama decoder.
func asTransformers5Pipeline(b []byte, legacy bool) ([]byte, error) {
	var j map[string]json.RawMessage
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: %w", err)
	}
	scheme := "first"
	if legacy {
		scheme = "always"
	}
	j["normalizer"] = json.RawMessage("null")
	j["pre_tokenizer"] = json.RawMessage(fmt.Sprintf(`{"type":"Metaspace","replacement":"▁","prepend_scheme":%q,"split":false}`, scheme))
	j["decoder"] = json.RawMessage(`{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}`)
	return json.Marshal(j)
}

// Close frees the Rust tokenizer.
func (t *Tokenizer) Close() {
	if t.tk != nil {
		t.tk.Close()
		t.tk = nil
	}
}

// Compat reports which HF behaviour this tokenizer reproduces.
func (t *Tokenizer) Compat() Compat { return t.compat }

// TokenID returns the id of an added token (e.g. "<image>"), or -1 when the text is not one
// token. Ordinary pieces come back with their "▁" prefix, so they are not looked up this way.
func (t *Tokenizer) TokenID(tok string) int32 {
	ids, _ := t.tk.Encode(tok, false)
	if len(ids) != 1 {
		return -1
	}
	return int32(ids[0])
}

// Encode tokenizes text. addSpecial adds BOS/EOS as tokenizer_config.json asks (HF's
// add_special_tokens=True); the added tokens written in the text are always recognised.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int32 {
	ids, _ := t.EncodeOffsets(text, addSpecial)
	return ids
}

// EncodeOffsets also returns each token's byte range in text ([0,0] for BOS/EOS).
func (t *Tokenizer) EncodeOffsets(text string, addSpecial bool) ([]int32, [][2]int) {
	// Offsets must index the text we were given: the Rust side would replace invalid UTF-8
	// itself and shift them, so do it here first.
	text = strings.ToValidUTF8(text, "\uFFFD")
	if strings.IndexByte(text, 0) >= 0 {
		// The C boundary would cut the text at the NUL; HF would encode it as <0x00>.
		text = strings.ReplaceAll(text, "\x00", "\uFFFD")
	}
	enc := t.tk.EncodeWithOptions(text, false, tokenizers.WithReturnOffsets())
	n := len(enc.IDs)
	ids := make([]int32, 0, n+2)
	offs := make([][2]int, 0, n+2)
	if addSpecial && t.AddBOS {
		ids = append(ids, t.BOS)
		offs = append(offs, [2]int{0, 0})
	}
	for i, id := range enc.IDs {
		ids = append(ids, int32(id))
		offs = append(offs, [2]int{int(enc.Offsets[i][0]), int(enc.Offsets[i][1])})
	}
	if addSpecial && t.AddEOS {
		ids = append(ids, t.EOS)
		offs = append(offs, [2]int{len(text), len(text)})
	}
	return ids, offs
}

// Decode turns ids back into text; skipSpecial drops added special tokens (<s>, <image>, ...).
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) string {
	u := make([]uint32, len(ids))
	for i, id := range ids {
		u[i] = uint32(id)
	}
	return t.tk.Decode(u, skipSpecial)
}

// VocabSize is the size of the base vocabulary plus added tokens.
func (t *Tokenizer) VocabSize() int { return int(t.tk.VocabSize()) }
