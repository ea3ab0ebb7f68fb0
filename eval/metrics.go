package eval

import "strings"

// ANLS and VQA accuracy as the two harnesses compute them (spec §6.3, peers.md §4). Scores are
// per question, in [0, 1]; a dataset's score is their mean.

// anlsNormalize is ' '.join(s.strip().lower().split()).
func anlsNormalize(s string) string { return strings.Join(pySplit(pyLower(pyStrip(s))), " ") }

// levenshtein is the edit distance over code points (insertions, deletions, substitutions).
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > len(rb) {
		ra, rb = rb, ra
	}
	prev := make([]int, len(ra)+1)
	cur := make([]int, len(ra)+1)
	for i := range prev {
		prev[i] = i
	}
	for j, cb := range rb {
		cur[0] = j + 1
		for i, ca := range ra {
			if ca == cb {
				cur[i+1] = prev[i]
			} else {
				cur[i+1] = 1 + min(prev[i], prev[i+1], cur[i])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(ra)]
}

// ANLSThreshold: a question whose best similarity is below it scores 0.
const ANLSThreshold = 0.5

// ANLS is the DocVQA score of one question as lmms-eval (anls) and VLMEvalKit (anls_compute
// and hit_calculate) compute it: the edit distance is taken between the normalized strings
// (stripped, lower-cased, white space collapsed) but divided by the longer of the raw strings'
// upper-cased lengths, a quirk both share; the score is 1 − the smallest normalized distance
// over the references, zeroed below 0.5. No references (which neither harness can score) gives 0.
func ANLS(prediction string, references []string) float64 {
	if len(references) == 0 {
		return 0
	}
	det := anlsNormalize(prediction)
	best := 0.0
	for i, ref := range references {
		d := levenshtein(anlsNormalize(ref), det)
		length := max(pyUpperLen(ref), pyUpperLen(prediction))
		v := 0.0
		if length != 0 {
			v = float64(d) / float64(length)
		}
		if i == 0 || v < best {
			best = v
		}
	}
	return threshold(1 - best)
}

func threshold(s float64) float64 {
	if s < ANLSThreshold {
		return 0
	}
	return s
}

// VQAAccuracy is the VQA score of one question: prediction and references are normalized by
// normalize, then for each reference i, min(1, (matches among the other references) / 3), and
// the mean over i. The mean is computed exactly (the terms are thirds) and rounded once, as
// Python's statistics.mean does. No references gives 0.
func VQAAccuracy(prediction string, references []string, normalize func(string) string) float64 {
	if len(references) == 0 {
		return 0
	}
	pred := normalize(prediction)
	refs := make([]string, len(references))
	matches := 0
	for i, r := range references {
		refs[i] = normalize(r)
		if refs[i] == pred {
			matches++
		}
	}
	thirds := 0 // Σ_i min(3, matches excluding i)
	for _, r := range refs {
		m := matches
		if r == pred {
			m--
		}
		thirds += min(3, m)
	}
	return float64(thirds) / float64(3*len(refs))
}

// pandasNA are the strings pandas reads back as NaN by default (its STR_NA_VALUES).
var pandasNA = map[string]bool{
	"": true, "#N/A": true, "#N/A N/A": true, "#NA": true, "-1.#IND": true, "-1.#QNAN": true, "-NaN": true,
	"-nan": true, "1.#IND": true, "1.#QNAN": true, "<NA>": true, "N/A": true, "NA": true, "NULL": true,
	"NaN": true, "None": true, "n/a": true, "nan": true, "null": true,
}

// PandasRoundTrip is what becomes of a prediction in VLMEvalKit between inference and scoring:
// predictions are written to a spreadsheet and read back with pandas, whose default NA strings
// (the empty string, "None", "N/A", "null", ...) come back as NaN, which str() turns into "nan".
func PandasRoundTrip(prediction string) string {
	if pandasNA[prediction] {
		return "nan"
	}
	return prediction
}
