// Package model is Idefics2 as one GoMLX graph: the SigLIP vision encoder at native resolution
// with NaViT position buckets, the modality connector (SwiGLU projection and perceiver
// resampler), the image-token merge, the Mistral decoder and the untied LM head.
//
// Context scopes mirror the Hugging Face parameter names (model/text_model/layers/0/self_attn/
// q_proj holds the variable "weight"), so loading a checkpoint, LoRA targeting and PEFT export are
// a name mapping, not a translation table. Weights keep PyTorch's [out, in] layout.
//
// Everything data-dependent that HF computes with Python control flow (which images are
// padding, patch masks, NaViT position ids, where image features go) is computed on the host by
// NewBatch, so the graph has static shapes and compiles once per bucket.
package model
