// Package lora is LoRA and DoRA as PEFT computes them, injected into the model through the one
// Linear function every projection of package model calls. It owns the adapter configuration
// (PEFT's adapter_config.json), which modules an adapter targets, the adapter variables (named
// like PEFT's keys: <module>.lora_A.weight, <module>.lora_B.weight, <module>.lora_magnitude_vector),
// their initialisation, and the export/import of adapters in PEFT's safetensors format.
//
// It knows module names, never model internals: a module is targeted by its HF name alone.
package lora
