// Package serve is the idefics2-serve HTTP server: OpenAI's chat-completions API (with image
// parts and streaming), TGI's /generate and /generate_stream, a model list, health and
// Prometheus metrics, over the base model and any number of PEFT adapters loaded beside it.
//
// Requests are checked and encoded (chat template, image decoding, the Idefics2 processor) in
// their own goroutines, so bad input is answered with a 400 before it takes a place in the
// queue. One worker then decodes: it takes the oldest waiting request and every other waiting
// request that can share its batch (same model, same decoding settings), left pads them into one
// batch and runs the KV-cache Generator, streaming each row's tokens back as they are chosen. A
// greedy answer is the same alone or in a batch. The queue is bounded (429 with Retry-After
// beyond it), every request has a deadline, a client that goes away retires its row at the next
// step, and Shutdown lets what was admitted finish while refusing anything new.
package serve
