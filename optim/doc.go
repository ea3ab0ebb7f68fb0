// Package optim is AdamW as torch.optim.AdamW computes it (decoupled weight decay, bias
// correction in double precision on the host), global-norm gradient clipping as
// torch.nn.utils.clip_grad_norm_, learning-rate schedules counted in optimizer steps as HF's
// get_scheduler, and HF Trainer's rule for which parameters get no weight decay.
//
// GoMLX's own optimizer applies weight decay to every variable, has no global-norm clipping and
// advances its schedule on every micro-step under gradient accumulation; this package replaces it.
package optim
