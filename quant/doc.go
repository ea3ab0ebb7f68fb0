// Package quant is bitsandbytes' 4-bit weight format, as QLoRA stores a frozen base model: NF4 and
// FP4 code tables, blocks of 64 weights sharing one absmax scale, two 4-bit codes per byte (the
// first weight in the high nibble), and "double quantization" of the absmax scales (8-bit dynamic
// codes in blocks of 256 around their mean, bitsandbytes' compress_statistics=True).
//
// Quantizing and dequantizing on the host reproduce bitsandbytes 0.50.2 on the CPU bit for bit,
// including its rounding quirks (the 65536-bin lookup of its 8-bit quantizer, PyTorch's cascade
// summation for the mean of the scales); DequantizeGraph rebuilds a weight inside a GoMLX graph
// from the packed codes, so that only the 4-bit form has to stay on the device.
//
// The package knows nothing of models or checkpoints; it works on flat slices and graph nodes.
package quant
