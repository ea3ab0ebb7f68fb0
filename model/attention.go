package model

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint
)

// Attention kinds (`model.attention` in a config).
const (
	// AttentionBlocked splits the queries into blocks whose float32 scores stay under
	// AttentionBlockBytes, skips key blocks a causal mask hides entirely, and keeps only the
	// compute-dtype probabilities for the backward pass (the softmax has its own gradient rule).
	// It is the default: the values are those of AttentionEager, the memory is not.
	AttentionBlocked = "blocked"
	// AttentionEager is HF's eager attention as written: the whole [B, H, Tq, Tk] score tensor
	// at once, differentiated op by op. It is the reference the tests compare against.
	AttentionEager = "eager"
)

// AttentionBlockBytes bounds the float32 scores of one query block of AttentionBlocked. At 256 MiB
// a 980² image (4900 patches, 16 heads) is done in blocks of 856 queries, and a B=2, T=2048
// Mistral layer in blocks of 512.
var AttentionBlockBytes = 256 << 20

// ValidAttention reports whether kind names an attention implementation.
func ValidAttention(kind string) error {
	switch kind {
	case "", AttentionBlocked, AttentionEager:
		return nil
	}
	return fmt.Errorf("model.attention %q: want %q or %q", kind, AttentionBlocked, AttentionEager)
}

// maskedValue is what masked attention logits become. A finite value rather than -Inf keeps a
// fully masked row (a left-padding query) finite in the forward and the backward pass; its
// output is never read.
const maskedValue = -1e9

// attention is softmax(q·kᵀ·scale, masked)·v with grouped-query heads.
// q is [B, Tq, Hq, d]; k and v are [B, Tk, Hkv, d] with Hq a multiple of Hkv (query head h reads
// kv head h / (Hq/Hkv)); allowed is a boolean mask broadcastable to [B, Tq, Tk] given as
// [B, 1|Tq, Tk], or nil. causal says that query i never sees key j > i + (Tk − Tq), which lets the
// blocked kind skip those keys. Scores are scaled in the compute dtype, softmax runs in float32
// and the weights are cast back, as HF's eager attention does. Returns [B, Tq, Hq·d].
func (b *builder) attention(q, k, v, allowed *Node, scale float64, causal bool) *Node {
	batch, tq, hq, d := q.Shape().Dim(0), q.Shape().Dim(1), q.Shape().Dim(2), q.Shape().Dim(3)
	tk, hkv := k.Shape().Dim(1), k.Shape().Dim(2)
	if hq != hkv {
		group := hq / hkv
		k = Reshape(BroadcastToDims(InsertAxes(k, 3), batch, tk, hkv, group, d), batch, tk, hq, d)
		v = Reshape(BroadcastToDims(InsertAxes(v, 3), batch, tk, hkv, group, d), batch, tk, hq, d)
	}
	if b.attentionKind == AttentionEager {
		return Reshape(attentionBlock(q, k, v, allowed, scale, false), batch, tq, hq*d)
	}
	rowBytes := batch * hq * tk * 4
	block := max(1, AttentionBlockBytes/rowBytes)
	if block >= tq {
		return Reshape(attentionBlock(q, k, v, allowed, scale, true), batch, tq, hq*d)
	}
	var outs []*Node
	for lo := 0; lo < tq; lo += block {
		hi := min(lo+block, tq)
		qb := SliceAxis(q, 1, AxisRange(lo, hi))
		if len(outs) > 0 {
			// One block after the other: without the dependency XLA may run the blocks side by
			// side and hold all their scores at once, which is what blocking is meant to avoid.
			qb = after(qb, outs[len(outs)-1])
		}
		kb, vb, keys := k, v, tk
		if causal {
			// Query hi−1 sees keys up to hi−1+(Tk−Tq): the keys after that are masked for the
			// whole block, so they are not computed at all.
			keys = min(tk, hi+tk-tq)
			kb, vb = SliceAxis(k, 1, AxisRange(0, keys)), SliceAxis(v, 1, AxisRange(0, keys))
		}
		var ab *Node
		if allowed != nil {
			ab = allowed
			if allowed.Shape().Dim(1) != 1 {
				ab = SliceAxis(ab, 1, AxisRange(lo, hi))
			}
			if keys != tk {
				ab = SliceAxis(ab, 2, AxisRange(0, keys))
			}
		}
		outs = append(outs, attentionBlock(qb, kb, vb, ab, scale, true))
	}
	return Reshape(Concatenate(outs, 1), batch, tq, hq*d)
}

// attentionBlock attends queries q [B, tq, H, d] to k, v [B, tk, H, d] (heads already
// expanded) and returns [B, tq, H, d]. With keepProbs, the backward pass reads only the
// compute-dtype probabilities (see softmaxKeepingProbs).
func attentionBlock(q, k, v, allowed *Node, scale float64, keepProbs bool) *Node {
	batch, tq, hq, tk := q.Shape().Dim(0), q.Shape().Dim(1), q.Shape().Dim(2), k.Shape().Dim(1)
	dt := q.DType()
	scores := MulScalar(Einsum("bqhd,bkhd->bhqk", q, k), scale)
	scores = ConvertDType(scores, dtypes.Float32)
	if allowed != nil {
		m := InsertAxes(allowed, 1) // [B, 1, Tq|1, Tk]
		m = BroadcastToDims(m, batch, hq, tq, tk)
		scores = Where(m, scores, BroadcastToDims(Scalar(scores.Graph(), dtypes.Float32, maskedValue), scores.Shape().Dimensions...))
	}
	var probs *Node
	if keepProbs {
		probs = softmaxKeepingProbs(scores, dt)
	} else {
		probs = ConvertDType(Softmax(scores, -1), dt)
	}
	return Einsum("bhqk,bkhd->bqhd", probs, v)
}

// softmaxKeepingProbs is ConvertDType(Softmax(scores, −1), dt) whose gradient is computed from
// the dt probabilities P alone: dS = P ⊙ (dP − Σ_k dP ⊙ P). Differentiating Softmax op by op
// would keep its float32 exponentials and the scores as well (2 of the 2.5 bytes per score the
// eager backward holds in bfloat16). The value is built as sg(P) + (S' − sg(S')) with S' an
// identity of the scores carrying the rule: the second term is exactly zero for finite scores
// (masked ones are −1e9, not −Inf) and routes P's adjoint to the rule.
func softmaxKeepingProbs(scores *Node, dt dtypes.DType) *Node {
	probs := ConvertDType(Softmax(StopGradient(scores), -1), dt)
	carrier := IdentityWithCustomGradient(scores, func(_, dP *Node) *Node {
		p := ConvertDType(probs, dtypes.Float32)
		dP = ConvertDType(dP, dtypes.Float32)
		return Mul(p, Sub(dP, ReduceAndKeep(Mul(dP, p), ReduceSum, -1)))
	})
	return Add(StopGradient(probs), ConvertDType(Sub(carrier, StopGradient(carrier)), dt))
}
