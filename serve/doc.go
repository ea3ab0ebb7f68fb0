// Package serve is the idefics2-serve HTTP server: OpenAI's chat-completions API (with image
// parts and streaming), TGI's /generate and /generate_stream, a model list, health and
// Prometheus metrics, over the base model and any number of PEFT adapters loaded beside it
// (siblings of the base that share its weights).
//
// Requests are checked and encoded (chat template, image decoding, the Idefics2 processor) in
// their own goroutines, so bad input is answered with a 400 before it takes a place in the
// queue. One worker then decodes with continuous batching (scheduler.go): between two decode
// steps it admits waiting requests into their model's running batch (model.Running) and
// retires the rows that are done, streaming each row's tokens back as they are chosen. An
// answer is the same alone or in a batch. The queue is bounded (429 with Retry-After beyond
// it), every request has a deadline, a client that goes away frees its row before the next
// step, and Shutdown lets what was admitted finish while refusing anything new.
package serve
