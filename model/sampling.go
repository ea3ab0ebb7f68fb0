package model

import (
	"math"
	"math/rand/v2"
	"sort"
)

// The logits processors of HF generate, in HF's order, on one row of float32 scores: repetition
// penalty, bad words, then (sampling only) temperature, top-k and top-p; greedy takes the first
// maximum, sampling draws from the softmax. Scores stay float32 as in HF (generate upcasts the
// last logits to float32 and every processor works in place on them).

var negInf = float32(math.Inf(-1))

// repetitionPenalty divides positive scores and multiplies negative scores of every token id
// that occurs in hist (the row so far after its leading padding: prompt and new tokens), once
// per id.
func repetitionPenalty(scores []float32, hist []int32, penalty float64) {
	if penalty == 1 {
		return
	}
	p := float32(penalty)
	seen := make(map[int32]bool, len(hist))
	for _, id := range hist {
		if seen[id] || id < 0 || int(id) >= len(scores) {
			continue
		}
		seen[id] = true
		if s := scores[id]; s < 0 {
			scores[id] = s * p
		} else {
			scores[id] = s / p
		}
	}
}

// banBadWords sets to −inf the last token of every bad sequence whose other tokens end hist
// (single-token sequences are always banned).
func banBadWords(scores []float32, hist []int32, bad [][]int) {
	for _, w := range bad {
		last := w[len(w)-1]
		if last < 0 || last >= len(scores) {
			continue
		}
		prefix := w[:len(w)-1]
		if len(prefix) > len(hist) {
			continue
		}
		match := true
		tail := hist[len(hist)-len(prefix):]
		for i, id := range prefix {
			if int(tail[i]) != id {
				match = false
				break
			}
		}
		if match {
			scores[last] = negInf
		}
	}
}

// argmax returns the first index of the largest score.
func argmax(scores []float32) int {
	best := 0
	for i, s := range scores {
		if s > scores[best] {
			best = i
		}
	}
	return best
}

// temperature divides every score by t.
func temperature(scores []float32, t float64) {
	if t == 1 {
		return
	}
	tf := float32(t)
	for i := range scores {
		scores[i] /= tf
	}
}

// topK keeps the scores ≥ the k-th largest (ties at the boundary are all kept).
func topK(scores []float32, k int) {
	if k <= 0 || k >= len(scores) {
		return
	}
	sorted := append([]float32(nil), scores...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] > sorted[j] })
	kth := sorted[k-1]
	for i, s := range scores {
		if s < kth {
			scores[i] = negInf
		}
	}
}

// topP removes, in ascending order of score, the tokens whose cumulative probability stays
// ≤ 1 − p, always keeping the most likely token.
func topP(scores []float32, p float64) {
	if p >= 1 {
		return
	}
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	probs := softmax64(scores)
	cum := 0.0
	for n, i := range idx {
		cum += probs[i]
		if n == len(idx)-1 {
			break // min_tokens_to_keep = 1
		}
		if cum <= 1-p {
			scores[i] = negInf
		}
	}
}

func softmax64(scores []float32) []float64 {
	mx := math.Inf(-1)
	for _, s := range scores {
		mx = math.Max(mx, float64(s))
	}
	out := make([]float64, len(scores))
	sum := 0.0
	for i, s := range scores {
		if math.IsInf(float64(s), -1) {
			continue
		}
		out[i] = math.Exp(float64(s) - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// sample draws an index from softmax(scores).
func sample(scores []float32, rng *rand.Rand) int {
	probs := softmax64(scores)
	u := rng.Float64()
	cum := 0.0
	last := 0
	for i, p := range probs {
		if p == 0 {
			continue
		}
		cum += p
		last = i
		if u < cum {
			return i
		}
	}
	return last
}

// processScores applies the processors of c to one row's scores, in place. hist is the whole
// row so far; its first lead tokens are left padding.
func processScores(scores []float32, hist []int32, lead int, c *GenerationConfig) {
	repetitionPenalty(scores, hist[lead:], c.RepetitionPenalty)
	banBadWords(scores, hist, c.BadWordsIDs)
	if c.DoSample {
		temperature(scores, c.Temperature)
		topK(scores, c.TopK)
		topP(scores, c.TopP)
	}
}

// nextToken processes one row's scores (in place) and picks the next token: the first maximum
// when greedy, a draw from the softmax when sampling.
func nextToken(scores []float32, hist []int32, lead int, c *GenerationConfig, rng *rand.Rand) int32 {
	processScores(scores, hist, lead, c)
	if !c.DoSample {
		return int32(argmax(scores))
	}
	return int32(sample(scores, rng))
}
