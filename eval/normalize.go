package eval

import (
	"strings"
	"unicode"
)

// VQA answer normalization, as the harnesses run it before comparing a prediction with the ten
// TextVQA references (spec §6.3). Two variants:
//
//   - EvalAI (lmms-eval's EvalAIAnswerProcessor, from MMF): lower-case, delete "," and "?",
//     split "'s" off, then punctuation, periods, number words, articles and contractions;
//   - VLMEvalKit (process_answer): the same punctuation/period/number/article/contraction steps
//     without the first lower-case and deletions, with a slightly different digit,digit test, and
//     (since VLMEvalKit's 2025-05-13 regex fix) periods kept after a digit as well as before one.
//
// Both keep the quirks of the original code, on purpose: a punctuation mark is deleted (instead
// of replaced by a space) when the text has it next to a space anywhere or has a digit,digit
// pattern anywhere; periods are deleted at most 32 at a time (the regex flag re.UNICODE = 32 is
// passed where the count goes); EvalAI deletes a period unless a digit follows it (its
// lookbehind is mistyped as a lookahead), so "2." becomes "2", while VLMEvalKit keeps "2.".

// vqaPunctuation are the 21 marks of the VQA evaluation, in the order they are processed.
var vqaPunctuation = []string{";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"}

// numberWords maps the number words of the VQA evaluation to digits.
var numberWords = map[string]string{
	"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
	"six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

var articles = map[string]bool{"a": true, "an": true, "the": true}

// contractions is the contraction table of the official VQA evaluation: apostrophe-less spellings
// to the canonical ones. (Its capitalised keys never match after lower-casing; they are kept so
// that the table is the reference one.)
var contractions = map[string]string{
	"aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
	"couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
	"dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
	"hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
	"hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
	"I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
	"it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
	"mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
	"mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
	"oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
	"'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
	"she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
	"shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
	"somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
	"someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
	"someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
	"somethingd've": "something'd've", "something'dve": "something'd've",
	"somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
	"there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
	"theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
	"theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
	"weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
	"whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
	"whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
	"wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
	"whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
	"wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
	"y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
	"y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
	"youll": "you'll", "youre": "you're", "youve": "you've",
}

// NormalizeEvalAI is lmms-eval's EvalAIAnswerProcessor (the MMF/EvalAI TextVQA normalizer).
func NormalizeEvalAI(s string) string {
	s = pyLower(s)
	s = strings.ReplaceAll(s, ",", "")
	s = strings.ReplaceAll(s, "?", "")
	s = strings.ReplaceAll(s, "'s", " 's")
	s = pyStrip(s)
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "\t", " ")
	s = pyStrip(s)
	s = punctuation(s, hasDigitCommasDigit(s), false)
	return digitsArticles(s)
}

// NormalizeVLMEvalKit is VLMEvalKit's process_answer (its copy of the VQA normalizer).
func NormalizeVLMEvalKit(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "\t", " ")
	s = pyStrip(s)
	s = punctuation(s, hasDigitCommaDigit(s), true)
	return digitsArticles(s)
}

// punctuation deletes or blanks the 21 marks, then deletes periods not followed by a digit (nor
// preceded by one, with afterDigit). commaRule is whether the digit,digit pattern of the variant
// occurs in the input.
func punctuation(in string, commaRule, afterDigit bool) string {
	out := in
	for _, p := range vqaPunctuation {
		if commaRule || strings.Contains(in, p+" ") || strings.Contains(in, " "+p) {
			out = strings.ReplaceAll(out, p, "")
		} else {
			out = strings.ReplaceAll(out, p, " ")
		}
	}
	return stripPeriods(out, 32, afterDigit)
}

// stripPeriods deletes, left to right, at most max periods that are not followed by a (Unicode
// decimal) digit and, with afterDigit, not preceded by one either.
func stripPeriods(s string, max int, afterDigit bool) string {
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	removed := 0
	for i, r := range rs {
		if r == '.' && removed < max && !(i+1 < len(rs) && unicode.IsDigit(rs[i+1])) &&
			!(afterDigit && i > 0 && unicode.IsDigit(rs[i-1])) {
			removed++
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hasDigitCommasDigit reports a digit, one or more commas, and a digit (EvalAI's comma regex).
func hasDigitCommasDigit(s string) bool {
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		if rs[i] != ',' || i == 0 || !unicode.IsDigit(rs[i-1]) {
			continue
		}
		j := i
		for j < len(rs) && rs[j] == ',' {
			j++
		}
		if j < len(rs) && unicode.IsDigit(rs[j]) {
			return true
		}
	}
	return false
}

// hasDigitCommaDigit reports a digit, one comma, and a digit (VLMEvalKit's comma regex).
func hasDigitCommaDigit(s string) bool {
	rs := []rune(s)
	for i := 1; i+1 < len(rs); i++ {
		if rs[i] == ',' && unicode.IsDigit(rs[i-1]) && unicode.IsDigit(rs[i+1]) {
			return true
		}
	}
	return false
}

// digitsArticles lower-cases, splits on white space, maps number words to digits, drops
// articles, maps contractions and joins with single spaces.
func digitsArticles(s string) string {
	words := pySplit(pyLower(s))
	out := words[:0]
	for _, w := range words {
		if d, ok := numberWords[w]; ok {
			w = d
		}
		if !articles[w] {
			out = append(out, w)
		}
	}
	for i, w := range out {
		if c, ok := contractions[w]; ok {
			out[i] = c
		}
	}
	return strings.Join(out, " ")
}
