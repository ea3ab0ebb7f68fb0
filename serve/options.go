package serve

import (
	"fmt"
	"strings"
)

// Options are the `serve` section of the configuration (idefics2-serve's flags are shorthands
// for these keys).
type Options struct {
	Addr string `mapstructure:"addr" check:"nonempty"` // HOST:PORT to listen on
	// Name is the id of the base model in /v1/models and the `model` field ("" : the model
	// directory's base name).
	Name string `mapstructure:"name"`
	// Adapters are NAME=DIR pairs: each PEFT adapter is served as the model NAME.
	Adapters []string `mapstructure:"adapters"`

	MaxRequestBytes int64  `mapstructure:"max_request_bytes" check:"min=1"` // a request body larger than this is refused (413)
	MaxImageBytes   int64  `mapstructure:"max_image_bytes" check:"min=1"`   // one image's encoded bytes, whatever its source
	MaxImages       int    `mapstructure:"max_images" check:"min=0"`        // images per request
	MaxPromptTokens int    `mapstructure:"max_prompt_tokens" check:"min=0"` // prompt tokens after image expansion (0: the model's context)
	MaxNewTokens    int    `mapstructure:"max_new_tokens" check:"min=1"`    // the largest max_tokens a request may ask
	DefaultMaxNew   int    `mapstructure:"default_max_new_tokens" check:"min=1"`
	Splitting       string `mapstructure:"splitting" check:"oneof=|on|off"` // image splitting; "" keeps preprocessor_config.json's

	QueueSize int `mapstructure:"queue_size" check:"min=1"` // requests waiting beyond this are answered 429
	// MaxBatch is the most rows decoding at once. A model's running batch has a power of two
	// rows (at most the next one above max_batch) and its KV cache a power of two times 64
	// slots, so XLA compiles a handful of decode-step graphs whatever arrives.
	MaxBatch    int `mapstructure:"max_batch" check:"min=1"`
	BatchWaitMS int `mapstructure:"batch_wait_ms" check:"min=0"` // how long an idle worker waits for more requests once one arrives
	// KVCacheGiB bounds the device memory of the running batches' KV caches together (0: no
	// bound). A request whose admission would pass it waits until rows leave; one that cannot
	// fit even alone is refused with a 400.
	KVCacheGiB float64 `mapstructure:"kv_cache_gib" check:"min=0"`

	RequestTimeoutS  int `mapstructure:"request_timeout_s" check:"min=1"`  // per-request deadline, queue time included
	ShutdownTimeoutS int `mapstructure:"shutdown_timeout_s" check:"min=0"` // how long SIGTERM waits for requests in flight

	AllowRemoteImages bool   `mapstructure:"allow_remote_images"`            // fetch http(s) image URLs
	RemoteTimeoutS    int    `mapstructure:"remote_timeout_s" check:"min=1"` // timeout of one image fetch
	ImageRoot         string `mapstructure:"image_root"`                     // local image paths allowed below this directory ("" : none)
}

// DefaultOptions are the server's defaults.
func DefaultOptions() Options {
	return Options{
		Addr:            "127.0.0.1:8080",
		MaxRequestBytes: 64 << 20, MaxImageBytes: 20 << 20, MaxImages: 8, MaxNewTokens: 2048, DefaultMaxNew: 256,
		QueueSize: 64, MaxBatch: 8, BatchWaitMS: 5,
		RequestTimeoutS: 600, ShutdownTimeoutS: 120,
		RemoteTimeoutS: 10,
	}
}

// adapterPairs reads the NAME=DIR pairs, refusing a name used twice.
func (o Options) adapterPairs() ([][2]string, error) {
	seen := map[string]bool{}
	var out [][2]string
	for _, a := range o.Adapters {
		name, dir, ok := strings.Cut(a, "=")
		name, dir = strings.TrimSpace(name), strings.TrimSpace(dir)
		if !ok || name == "" || dir == "" {
			return nil, fmt.Errorf("serve.adapters: %q: want NAME=DIR (e.g. --adapter docvqa=runs/sft/peft-adapter)", a)
		}
		if seen[name] {
			return nil, fmt.Errorf("serve.adapters: the name %q is given twice", name)
		}
		seen[name] = true
		out = append(out, [2]string{name, dir})
	}
	return out, nil
}
