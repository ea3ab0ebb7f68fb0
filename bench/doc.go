// Package bench measures the Idefics2 graph the way users run it: the forward pass, the
// LoRA + connector train step and generation, for a model configuration with random weights
// (tiny, ~100M "small", or the full 8b shapes), on whichever backend is selected. It reports
// times, model FLOPs and MFU (peers.md §3.3 convention), compile counts and times, and peak
// host memory, as JSON and as a table; scripts/bench_hf.py writes the same JSON for Hugging Face
// transformers + PEFT, and Compare prints the ratios.
//
// Weights are drawn directly in Go (no checkpoint files), so the 8b shapes can be measured
// wherever 17 GB of bf16 fit.
package bench
