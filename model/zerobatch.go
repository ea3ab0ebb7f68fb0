package model

// ZeroBatch is a batch of B rows of T tokens and M images of hp×wp patches whose values are all
// zero (masks all valid): what compiling for a shape needs, e.g. a memory plan before training.
func ZeroBatch(c Config, B, T, M, hp, wp int) *Batch {
	p, ch := c.Vision.PatchSize, c.Vision.NumChannels
	ones := func(n int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	return &Batch{
		B: B, T: T, InputIDs: make([]int32, B*T), AttentionMask: ones(B * T), PositionIDs: make([]int32, B*T), Targets: make([]int32, B*T),
		M: M, Hp: hp, Wp: wp, Channels: ch, Patch: p, Pixels: make([]float32, M*ch*hp*p*wp*p),
		PatchMask: ones(M * hp * wp), VisionPositionIDs: make([]int32, M*hp*wp), ImageRow: make([]int32, B*T),
	}
}
