package eval

import (
	"strings"
	"unicode"
)

// The reference harnesses are Python; their scores depend on Python's string semantics, which
// differ from Go's in a few places that real answers do hit (non-ASCII letters, unusual white
// space). These helpers reproduce the Python ones over code points (Python strings are sequences
// of code points: len, indexing and edit distance count code points, not bytes).

// pyIsSpace is str.isspace for one code point (Go's unicode.IsSpace lacks U+001C–U+001F).
func pyIsSpace(r rune) bool { return pySpace[r] }

// pyStrip is str.strip().
func pyStrip(s string) string { return strings.TrimFunc(s, pyIsSpace) }

// pySplit is str.split() without arguments: runs of white space separate, none at the ends.
func pySplit(s string) []string { return strings.FieldsFunc(s, pyIsSpace) }

// pyLen is len(s): the number of code points.
func pyLen(s string) int { return len([]rune(s)) }

// pyUpperLen is len(s.upper()): some letters upper-case to several code points (ß → SS).
func pyUpperLen(s string) int {
	n := 0
	for _, r := range s {
		if k, ok := upperLen[r]; ok {
			n += k
		} else {
			n++
		}
	}
	return n
}

// pyLower is str.lower(): U+0130 lowers to "i̇" (two code points) and a capital sigma at the end
// of a word lowers to ς.
func pyLower(s string) string {
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range rs {
		switch {
		case r == 0x130:
			b.WriteString("i\u0307")
		case r == 0x3A3:
			if finalSigma(rs, i) {
				b.WriteRune(0x3C2)
			} else {
				b.WriteRune(0x3C3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// pyCapitalize is str.capitalize(): the first code point in title case (full mapping), the rest
// lower case.
func pyCapitalize(s string) string {
	rs := []rune(s)
	if len(rs) == 0 {
		return s
	}
	first, ok := titleFull[rs[0]]
	if !ok {
		first = string(unicode.ToTitle(rs[0]))
	}
	rest := pyLower(string(rs[1:]))
	if strings.ContainsRune(string(rs[1:]), 0x3A3) {
		// final-sigma context includes the first letter
		low := []rune(pyLower(s))
		rest = string(low[len(low)-len([]rune(rest)):])
	}
	return first + rest
}

// finalSigma is Unicode's Final_Sigma condition at rs[i]: a cased letter before it and none after
// it, skipping case-ignorable code points on both sides.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && caseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !cased(rs[j]) {
		return false
	}
	k := i + 1
	for k < len(rs) && caseIgnorable(rs[k]) {
		k++
	}
	return k == len(rs) || !cased(rs[k])
}

func cased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
