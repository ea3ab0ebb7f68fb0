package data

import "fmt"

// Compat chooses which Hugging Face behaviour the text side reproduces. The two differ in how
// text right after a special token is tokenized, and transformers 5 changed it:
//
//   - CompatTrained (default) is what the released Idefics2 checkpoints were trained with
//     (transformers 4.40–4.57, TGI, and anything that runs tokenizer.json as written): the
//     tokenizer.json pipeline as is, whose normalizer prefixes every text segment, including
//     one that follows <end_of_utterance> or an image, with "▁"; the <image> expansion is a
//     plain string replace.
//   - CompatTransformers5 is transformers 5's Idefics2Processor: LlamaTokenizer rebuilds the
//     pipeline with a Metaspace pre-tokenizer that prefixes only the very start of the text
//     (prepend_scheme "first", or "always" when tokenizer_config.json says legacy=true) and
//     drops tokenizer.json's normalizer; the processor then inserts a space after a closing
//     <fake_token_around_image> that is directly followed by a word, to keep that word's "▁".
//     The two give different ids for e.g. "<end_of_utterance>\nAssistant:" (▁ \n vs \n) and for
//     text with a leading space (" grabbed": [▁, ▁grabbed] vs [▁grabbed]).
type Compat int

const (
	CompatTrained Compat = iota
	CompatTransformers5
)

func (c Compat) String() string {
	switch c {
	case CompatTrained:
		return "trained"
	case CompatTransformers5:
		return "transformers5"
	}
	return fmt.Sprintf("Compat(%d)", int(c))
}

// ParseCompat reads the names String returns (as used in configs and fixtures).
func ParseCompat(s string) (Compat, error) {
	switch s {
	case "", "trained":
		return CompatTrained, nil
	case "transformers5":
		return CompatTransformers5, nil
	}
	return 0, fmt.Errorf("unknown tokenizer compat %q (want \"trained\" or \"transformers5\")", s)
}
