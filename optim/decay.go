package optim

import "regexp"

// noDecay matches the parameter names HF Trainer exempts from weight decay: biases and every
// normalisation weight (LayerNorm, RMSNorm, "norm" modules).
var noDecay = regexp.MustCompile(`(?i)(bias|layernorm|rmsnorm|layer_norm|(^|\.)norm($|\.)|_norm($|\.))`)

// Decays reports whether the parameter with HF name `name` gets weight decay.
func Decays(name string) bool { return !noDecay.MatchString(name) }
