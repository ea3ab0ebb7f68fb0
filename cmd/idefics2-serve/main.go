// Command idefics2-serve serves an Idefics2 model and its PEFT adapters over HTTP: OpenAI's
// chat-completions API (image parts, streaming), TGI's /generate and /generate_stream, a model
// list, /health and Prometheus /metrics.
//
//	idefics2-serve --model DIR [--tokenizer DIR] [--adapter NAME=DIR]... [--addr 127.0.0.1:8080]
//	idefics2-serve --config FILE [--set serve.max_batch=16]
//
// SIGTERM or SIGINT stops new requests (503) and waits for those in flight, up to
// serve.shutdown_timeout_s.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/idefics2/idefics2/config"
	"github.com/idefics2/idefics2/serve"
	"github.com/idefics2/idefics2/session"
)

// Config is the model to load and how to serve it.
type Config struct {
	Model session.Options `mapstructure:"model"`
	Serve serve.Options   `mapstructure:"serve"`
}

const usage = `usage: idefics2-serve --model DIR [--tokenizer DIR] [--adapter NAME=DIR]... [--addr HOST:PORT]
       idefics2-serve --config FILE [--set serve.max_batch=16 ...]`

func main() {
	cfg := Config{Model: session.Options{DType: "float32", Compat: "trained"}, Serve: serve.DefaultOptions()}
	fs := config.NewFlags("idefics2-serve", usage, &cfg)
	fs.Bind("model", "model.path", "Hugging Face model directory (required)")
	fs.Bind("tokenizer", "model.tokenizer", "tokenizer directory (default: the model directory)")
	fs.Bind("tokenizer-compat", "model.tokenizer_compat", "tokenizer behaviour: trained (transformers 4.40) or transformers5")
	fs.Bind("dtype", "model.dtype", "compute dtype: float32 or bfloat16")
	fs.Bind("backend", "model.backend", "GoMLX backend (default: $GOMLX_BACKEND, else XLA if a PJRT plugin loads, else pure Go)")
	fs.Bind("max-image-pixels", "model.max_image_pixels", "refuse images with more pixels than this (0: Pillow's limit; -1: none)")
	fs.Bind("adapter", "serve.adapters", "a PEFT adapter served as model NAME: NAME=DIR")
	fs.Bind("addr", "serve.addr", "HOST:PORT to listen on")
	fs.Bind("name", "serve.name", "the base model's id in /v1/models (default: the model directory's name)")
	fs.Bind("max-batch", "serve.max_batch", "rows decoded together")
	fs.Bind("queue-size", "serve.queue_size", "waiting requests beyond this are answered 429")
	fs.Bind("kv-cache-gib", "serve.kv_cache_gib", "bound the KV caches of all running batches to this many GiB (0: no bound)")
	fs.Bind("max-images", "serve.max_images", "images per request")
	fs.Bind("max-prompt-tokens", "serve.max_prompt_tokens", "prompt tokens per request, images included (0: the model's context)")
	fs.Bind("max-new-tokens", "serve.max_new_tokens", "the largest max_tokens a request may ask")
	fs.Bind("request-timeout", "serve.request_timeout_s", "per-request deadline in seconds, queue time included")
	fs.Bind("allow-remote-images", "serve.allow_remote_images", "fetch http(s) image URLs")
	fs.Bind("image-root", "serve.image_root", "allow local image paths below this directory")
	fs.Bind("splitting", "serve.splitting", "image splitting: on, off, or empty for preprocessor_config.json's")
	if err := fs.Parse(os.Args[1:], &cfg); err != nil {
		if !errors.Is(err, config.ErrHelp) {
			fmt.Fprintln(os.Stderr, "idefics2-serve:", err)
		}
		os.Exit(2)
	}
	cfg.Model.ApplyImageLimit()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "idefics2-serve:", err)
		os.Exit(1)
	}
}

func run(cfg Config) error {
	// Listen first: a port in use is reported before minutes of loading.
	ln, err := net.Listen("tcp", cfg.Serve.Addr)
	if err != nil {
		return err
	}
	start := time.Now()
	ms, err := serve.LoadModels(cfg.Model, cfg.Serve)
	if err != nil {
		ln.Close()
		return err
	}
	defer ms.Close()
	srv := serve.New(ms, cfg.Serve)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 30 * time.Second}
	slog.Info("idefics2-serve: listening", "addr", ln.Addr().String(), "models", ms.Names(), "load", time.Since(start).Round(time.Millisecond))

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return err
	case s := <-sig:
		slog.Info("idefics2-serve: finishing requests in flight", "signal", s.String(), "timeout_s", cfg.Serve.ShutdownTimeoutS)
	}
	signal.Stop(sig)
	srv.BeginShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Serve.ShutdownTimeoutS)*time.Second)
	defer cancel()
	err = hs.Shutdown(ctx)
	if werr := srv.Wait(ctx); err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w (requests still in flight were cut)", err)
	}
	slog.Info("idefics2-serve: stopped")
	return nil
}
