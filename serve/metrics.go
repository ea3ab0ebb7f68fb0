package serve

import (
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

// metrics are the server's counters in Prometheus' text exposition format (version 0.0.4),
// written by hand: a few counters, gauges and histograms need no client library.
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]int64 // (route, status code) → count

	promptTokens    atomic.Int64
	generatedTokens atomic.Int64
	queueDepth      atomic.Int64
	batchRows       atomic.Int64

	latency   *histogram // whole request, seconds
	ttft      *histogram // time to first token, seconds
	queueWait *histogram // admission to decoding, seconds
	batchSize *histogram // rows of a running batch at each step
}

func newMetrics(maxBatch int) *metrics {
	secs := []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	var rows []float64
	for b := 1; b < maxBatch; b *= 2 {
		rows = append(rows, float64(b))
	}
	rows = append(rows, float64(maxBatch))
	return &metrics{requests: map[[2]string]int64{},
		latency: newHistogram(secs), ttft: newHistogram(secs), queueWait: newHistogram(secs), batchSize: newHistogram(rows)}
}

func (m *metrics) request(route string, status int) {
	m.mu.Lock()
	m.requests[[2]string{route, fmt.Sprint(status)}]++
	m.mu.Unlock()
}

// write prints every metric, families in a fixed order.
func (m *metrics) write(w io.Writer) {
	fmt.Fprintln(w, "# HELP idefics2_requests_total HTTP requests answered, by route and status code.")
	fmt.Fprintln(w, "# TYPE idefics2_requests_total counter")
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		fmt.Fprintf(w, "idefics2_requests_total{route=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
	}
	m.mu.Unlock()
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter("idefics2_prompt_tokens_total", "Prompt tokens of admitted requests (image tokens included).", m.promptTokens.Load())
	counter("idefics2_generated_tokens_total", "Tokens generated, summed over rows.", m.generatedTokens.Load())
	gauge("idefics2_queue_depth", "Requests admitted and waiting for a batch.", m.queueDepth.Load())
	gauge("idefics2_batch_rows", "Rows decoding, over every running batch (0 when idle).", m.batchRows.Load())
	m.latency.write(w, "idefics2_request_duration_seconds", "Time from a generation request's arrival to its last byte.")
	m.ttft.write(w, "idefics2_time_to_first_token_seconds", "Time from a generation request's arrival to its first new token.")
	m.queueWait.write(w, "idefics2_queue_wait_seconds", "Time a request waited in the queue before it joined a running batch.")
	m.batchSize.write(w, "idefics2_batch_size", "Rows of a running batch at each decode step (batch occupancy).")
}

// histogram is a Prometheus histogram with fixed upper bounds.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []int64 // per bound, not cumulative; the last is +Inf
	sum    float64
	n      int64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]int64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	if math.IsNaN(v) {
		return
	}
	i := sort.SearchFloat64s(h.bounds, v) // first bound ≥ v: Prometheus buckets are le
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.n++
	h.mu.Unlock()
}

func (h *histogram) write(w io.Writer, name, help string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum int64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", name, b, cum)
	}
	cum += h.counts[len(h.bounds)]
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, cum, name, h.sum, name, h.n)
}
