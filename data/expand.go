package data

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Image placeholder expansion (spec §4.1). Every literal "<image>" becomes the image string
// (<fake> <image>×64 <fake>, five times over with splitting), then each pair of adjacent fake
// tokens collapses into one, exactly as Python's str.replace does: non-overlapping, left to
// right, one pass. In CompatTransformers5 a space is then inserted after a fake token that
// is directly followed by something other than whitespace or "<".
//
// Offsets are carried through every step (posMap) so that label spans computed on the
// rendered template can be found again in the expanded text the tokenizer sees.

// imageString is what one "<image>" placeholder expands to, before collapsing.
func imageString(seqLen int, splitting bool) string {
	one := TokenFakeImage + strings.Repeat(TokenImage, seqLen) + TokenFakeImage
	if splitting {
		return strings.Repeat(one, 5)
	}
	return one
}

// ImageTokensPerImage is how many tokens one image occupies once expanded and collapsed in
// isolation: 66 (64 + 2 fakes) without splitting, 326 (5·64 + 6) with it.
func ImageTokensPerImage(seqLen int, splitting bool) int {
	if splitting {
		return 5*seqLen + 6
	}
	return seqLen + 2
}

// posMap maps every byte offset of an input string (0..len inclusive) to the output.
type posMap []int

// then composes m (input->mid) with next (mid->output).
func (m posMap) then(next posMap) posMap {
	out := make(posMap, len(m))
	for i, v := range m {
		out[i] = next[v]
	}
	return out
}

// replaceAllMapped is strings.ReplaceAll that also returns the offset map. Bytes inside a
// replaced occurrence map to the start of its replacement.
func replaceAllMapped(s, old, repl string) (string, posMap) {
	var b strings.Builder
	m := make(posMap, len(s)+1)
	i := 0
	for i < len(s) {
		if strings.HasPrefix(s[i:], old) {
			start := b.Len()
			for k := 0; k < len(old); k++ {
				m[i+k] = start
			}
			b.WriteString(repl)
			i += len(old)
			continue
		}
		m[i] = b.Len()
		b.WriteByte(s[i])
		i++
	}
	m[len(s)] = b.Len()
	return b.String(), m
}

// isPySpace is Python's str.isspace for one character, which is what `\s` matches in a
// Python str regex: Unicode White_Space plus the ASCII separators U+001C..U+001F.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// spaceAfterClosingFake inserts " " after each fake token followed by a character that is
// neither whitespace nor "<" (transformers 5's closing_fake_pattern).
func spaceAfterClosingFake(s string) (string, posMap) {
	var b strings.Builder
	m := make(posMap, len(s)+1)
	i := 0
	for i < len(s) {
		if strings.HasPrefix(s[i:], TokenFakeImage) {
			for k := 0; k < len(TokenFakeImage); k++ {
				m[i+k] = b.Len() + k
			}
			b.WriteString(TokenFakeImage)
			i += len(TokenFakeImage)
			if i < len(s) {
				r, _ := utf8.DecodeRuneInString(s[i:])
				if r != '<' && !isPySpace(r) {
					b.WriteByte(' ')
				}
			}
			continue
		}
		m[i] = b.Len()
		b.WriteByte(s[i])
		i++
	}
	m[len(s)] = b.Len()
	return b.String(), m
}

// expandImages applies the expansion to a rendered prompt.
func expandImages(text string, seqLen int, splitting bool, compat Compat) (string, posMap) {
	out, m := replaceAllMapped(text, TokenImage, imageString(seqLen, splitting))
	out, m2 := replaceAllMapped(out, TokenFakeImage+TokenFakeImage, TokenFakeImage)
	m = m.then(m2)
	if compat == CompatTransformers5 {
		var m3 posMap
		out, m3 = spaceAfterClosingFake(out)
		m = m.then(m3)
	}
	return out, m
}

// ExpandImagePlaceholders returns the text the tokenizer sees for a prompt holding literal
// "<image>" placeholders (what HF's Idefics2Processor feeds its tokenizer).
func ExpandImagePlaceholders(text string, seqLen int, splitting bool, compat Compat) string {
	out, _ := expandImages(text, seqLen, splitting, compat)
	return out
}
