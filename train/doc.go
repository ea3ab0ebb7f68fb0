// Package train is the fine-tuning loop: the step function (gradient accumulation normalised by
// the target tokens of the whole accumulation window, as HF Trainer does with
// num_items_in_batch), global-norm clipping and AdamW from package optim, trainable groups with
// their own learning rates, mixed precision with float32 master copies, checkpoints that resume
// bit for bit, metrics and the loss curve. It holds no model math: the graph comes from package
// model, adapters from package lora.
package train
