package cauldron

import (
	"hash/fnv"
	"math/bits"
)

// The shuffle and the mixture draw from splitmix64 streams keyed by (seed, source, epoch,
// window) rather than from math/rand: the order of samples is part of a checkpoint's meaning,
// so it must not change with a Go release, and every window's order must be computable
// without replaying the ones before it (that is what makes the cursor three small numbers).

type splitmix struct{ s uint64 }

func (r *splitmix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// below returns a value in [0, n).
func (r *splitmix) below(n int) int {
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int(hi)
}

// float returns a value in [0, 1).
func (r *splitmix) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// newRNG derives an independent stream from the seed and a path of integers.
func newRNG(seed uint64, path ...uint64) *splitmix {
	r := &splitmix{s: seed}
	for _, p := range path {
		r.s ^= p + 0x632be59bd9b4e019
		r.s = r.next()
	}
	return r
}

// perm is Fisher-Yates over 0..n-1.
func (r *splitmix) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.below(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// nameKey turns a source name into an RNG path element, so that adding a source to a mixture
// does not reshuffle the others.
func nameKey(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}
