package bench

import (
	"time"

	"github.com/idefics2/idefics2/model"
)

// generate measures greedy generation with model.Generator (KV cache, bucketed shapes) on the
// synthetic prompt. Random weights would stop at an eos whenever they happen to pick one, so
// eos and bad words are switched off and every call produces exactly the tokens asked for (HF's
// side uses min_new_tokens for the same effect).
func (r *runner) generate() *GenSection {
	N := r.o.NewTokens
	s := &GenSection{NewTokens: N, Iters: r.o.Iters}
	if N < 1 {
		s.Skipped = "-new-tokens must be at least 1"
		return s
	}
	g, err := model.NewGenerator(r.m, r.be)
	if err != nil {
		s.Skipped = err.Error()
		return s
	}
	in := SyntheticInputs(r.m.Config, r.res.Shape, r.o.Seed)
	in.Labels = nil
	gc := model.DefaultGenerationConfig()
	gc.EOSTokenIDs, gc.BadWordsIDs = nil, nil
	if p := r.m.Config.Text.PadTokenID; p != nil {
		gc.PadTokenID = *p
	}
	call := func(k int) (time.Duration, error) {
		c := gc
		c.MaxNewTokens = k
		t := time.Now()
		_, err := g.Generate(in, c)
		return time.Since(t), err
	}
	// Warm-up: compiles the prefill and decode-step graphs for both lengths.
	warmN, err := call(N)
	if err != nil {
		s.Skipped = "generate: " + err.Error()
		return s
	}
	warm1, err := call(1)
	if err != nil {
		s.Skipped = "generate: " + err.Error()
		return s
	}
	var t1, tn []time.Duration
	for i := 0; i < r.o.Iters; i++ {
		d1, err := call(1)
		if err != nil {
			s.Skipped = "generate: " + err.Error()
			return s
		}
		dn, err := call(N)
		if err != nil {
			s.Skipped = "generate: " + err.Error()
			return s
		}
		t1, tn = append(t1, d1), append(tn, dn)
	}
	m1, _ := timings(t1)
	mn, _ := timings(tn)
	s.PrefillMS, s.GenerateMS = ms(m1), ms(mn)
	if N > 1 && mn > m1 {
		s.DecodeTokS = float64(r.res.Shape.Batch*(N-1)) / (mn - m1).Seconds()
	}
	start := time.Now()
	for i := 0; i < 20; i++ {
		if _, err := call(N); err != nil {
			s.Skipped = "generate: " + err.Error()
			return s
		}
	}
	s.TwentyS = round(time.Since(start).Seconds(), 3)
	st := g.Stats()
	s.CompileCount = st.PrefillCompiles + st.StepCompiles
	s.CompileS = round(max(warmN-mn, 0).Seconds()+max(warm1-m1, 0).Seconds(), 3)
	s.HostPeakMiB = PeakRSSMiB()
	s.DevicePeakMiB = r.gpuMem.PeakMiB()
	r.logf("generate: prefill %.1f ms, %d tokens %.1f ms (%.3g decode tokens/s), 20 generations %.2fs, %d compiles",
		s.PrefillMS, N, s.GenerateMS, s.DecodeTokS, s.TwentyS, s.CompileCount)
	return s
}
