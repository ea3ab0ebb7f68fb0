package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate holds the worker before each batch until the test lets it go, so that requests pile up
// in the queue deterministically.
type gate struct {
	mu      sync.Mutex
	entered chan []*job
	release chan struct{}
}

func newGate(s *Server) *gate {
	g := &gate{entered: make(chan []*job, 16), release: make(chan struct{})}
	s.sched.setBeforeBatch(func(b []*job) {
		g.entered <- b
		<-g.release
	})
	return g
}

// queued waits until the queue holds n requests.
func queued(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.metrics.queueDepth.Load() != int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("queue depth %d, want %d", s.metrics.queueDepth.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Requests waiting together are decoded as one batch, and each greedy answer equals the answer
// it gets alone (left padding, per-row budgets and images of different sizes included).
func TestBatchedEqualsAlone(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.MaxBatch = 8 })
	type q struct {
		question string
		maxNew   int
		images   []string
	}
	qs := []q{
		{"What is in the image?", 6, []string{pngDataURL(t, 40, 24, 1)}},
		{"A much longer question about the picture, with many more words in it than the others?", 9, []string{pngDataURL(t, 64, 64, 2)}},
		{"Two images?", 4, []string{pngDataURL(t, 16, 48, 3), pngDataURL(t, 30, 30, 4)}},
		{"No image at all.", 7, nil},
	}
	alone := make([]string, len(qs))
	for i, r := range qs {
		code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", r.question, r.maxNew, r.images...))
		if code != 200 {
			t.Fatalf("%d: %v", code, out)
		}
		alone[i] = answerOf(t, out)
	}

	g := newGate(s)
	// A first request holds the worker, so the others queue and are taken as one batch.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); post(t, hs.URL+"/v1/chat/completions", chat("tiny", "hold", 2)) }()
	<-g.entered
	batched := make([]string, len(qs))
	for i, r := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", r.question, r.maxNew, r.images...))
			if code != 200 {
				t.Errorf("%d: %v", code, out)
				return
			}
			batched[i] = answerOf(t, out)
		}()
	}
	queued(t, s, len(qs))
	close(g.release)
	b := <-g.entered
	wg.Wait()
	if len(b) != len(qs) {
		t.Fatalf("the waiting requests ran in a batch of %d, want %d", len(b), len(qs))
	}
	for i := range qs {
		if batched[i] != alone[i] {
			t.Errorf("request %d: %q in a batch of %d, %q alone", i, batched[i], len(b), alone[i])
		}
	}
	if !strings.Contains(metricsText(t, hs.URL), fmt.Sprintf("idefics2_batch_size_bucket{le=\"%d\"}", len(qs))) {
		t.Error("no batch size histogram in /metrics")
	}
}

// With pad_batch, a batch of 3 decodes as 4 rows, and the answers stay those given alone.
func TestPadBatch(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.MaxBatch = 8; o.PadBatch = true })
	questions := []string{"one?", "the second question", "and a third, longer than the other two"}
	alone := make([]string, len(questions))
	for i, q := range questions {
		_, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", q, 5))
		alone[i] = answerOf(t, out)
	}
	g := newGate(s)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); post(t, hs.URL+"/v1/chat/completions", chat("tiny", "hold", 2)) }()
	<-g.entered
	got := make([]string, len(questions))
	for i, q := range questions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", q, 5))
			got[i] = answerOf(t, out)
		}()
	}
	queued(t, s, len(questions))
	before := tinyModels(t).list[0].Generator.Stats()
	close(g.release)
	<-g.entered
	wg.Wait()
	after := tinyModels(t).list[0].Generator.Stats()
	for i := range questions {
		if got[i] != alone[i] {
			t.Errorf("%d: %q padded, %q alone", i, got[i], alone[i])
		}
	}
	// Four rows per step, of which three are real: 5 steps × 3 real tokens at most.
	if steps := after.Steps - before.Steps; steps < 1 || after.Tokens-before.Tokens > 3*steps {
		t.Errorf("steps %d, tokens %d", steps, after.Tokens-before.Tokens)
	}
	if padRows(3, 8) != 4 || padRows(5, 6) != 6 || padRows(1, 8) != 1 || padRows(9, 8) != 9 {
		t.Error("padRows")
	}
}

// Requests for different models, or with different decoding settings, do not share a batch.
func TestBatchKeys(t *testing.T) {
	s, hs := testServer(t, nil)
	g := newGate(s)
	var wg sync.WaitGroup
	send := func(body map[string]any) {
		wg.Add(1)
		go func() { defer wg.Done(); post(t, hs.URL+"/v1/chat/completions", body) }()
	}
	send(chat("tiny", "hold", 2))
	<-g.entered
	send(chat("tiny", "a", 2))
	queued(t, s, 1)
	send(chat("tuned", "b", 2))
	queued(t, s, 2)
	sampled := chat("tiny", "c", 2)
	sampled["temperature"], sampled["seed"] = 0.7, 5
	send(sampled)
	queued(t, s, 3)
	send(chat("tiny", "d", 2))
	queued(t, s, 4)
	close(g.release)
	sizes := map[string]int{}
	for range 3 { // a+d, b, c
		b := <-g.entered
		sizes[b[0].model.Name+fmt.Sprint(b[0].gc.DoSample)] += len(b)
		if len(b) == 2 && (b[0].model != b[1].model || b[0].gc.DoSample || b[1].gc.DoSample) {
			t.Errorf("batch mixes %s and %s", b[0].key, b[1].key)
		}
	}
	wg.Wait()
	if sizes["tinyfalse"] != 2 || sizes["tunedfalse"] != 1 || sizes["tinytrue"] != 1 {
		t.Errorf("rows per model/sampling: %v", sizes)
	}
}

// Beyond the queue's capacity a request is answered 429 with Retry-After, in OpenAI's error
// shape; once the queue drains, requests are admitted again.
func TestQueueFull(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.QueueSize = 2; o.MaxBatch = 1 })
	g := newGate(s)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); post(t, hs.URL+"/v1/chat/completions", chat("tiny", fmt.Sprint("q", i), 2)) }()
		if i == 0 {
			<-g.entered
		}
	}
	queued(t, s, 2)
	code, out, h := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "one too many", 2))
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %v", code, h.Get("Retry-After"), out)
	}
	if e := out["error"].(map[string]any); e["type"] != "rate_limit_error" || e["code"] != "queue_full" {
		t.Errorf("error %v", e)
	}
	code, out, _ = post(t, hs.URL+"/generate", map[string]any{"inputs": "User: hi<end_of_utterance>\nAssistant:"})
	if code != http.StatusTooManyRequests || out["error_type"] != "overloaded" {
		t.Errorf("TGI: status %d: %v", code, out)
	}
	go func() {
		for range g.entered {
		}
	}()
	close(g.release)
	wg.Wait()
	if code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "again", 2)); code != 200 {
		t.Errorf("after the queue drained: %d %v", code, out)
	}
	if !strings.Contains(metricsText(t, hs.URL), `idefics2_requests_total{route="chat_completions",code="429"} 1`) {
		t.Error("the 429 is not counted in /metrics")
	}
}

// A client that goes away while queued leaves the queue at once; one that goes away while its
// row decodes retires the row at the next step, and the batch's other rows go on.
func TestClientCancel(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.MaxBatch = 4 })
	g := newGate(s)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); post(t, hs.URL+"/v1/chat/completions", chat("tiny", "hold", 2)) }()
	<-g.entered

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		body, _ := json.Marshal(chat("tiny", "queued then gone", 4))
		req, _ := http.NewRequestWithContext(ctx, "POST", hs.URL+"/v1/chat/completions", bytes.NewReader(body))
		_, err := http.DefaultClient.Do(req)
		errc <- err
	}()
	queued(t, s, 1)
	cancel()
	<-errc
	queued(t, s, 0)

	// Now a batch of two: one long streamed row whose client leaves after its first token, one
	// that must still finish.
	ctx2, cancel2 := context.WithCancel(context.Background())
	first := make(chan struct{})
	go func() {
		req := chat("tiny", "long and gone", 200)
		req["stream"] = true
		body, _ := json.Marshal(req)
		r, _ := http.NewRequestWithContext(ctx2, "POST", hs.URL+"/v1/chat/completions", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Error(err)
			close(first)
			return
		}
		buf := make([]byte, 1)
		resp.Body.Read(buf)
		close(first)
		<-ctx2.Done()
		resp.Body.Close()
	}()
	queued(t, s, 1)
	var stayed map[string]any
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, stayed, _ = post(t, hs.URL+"/v1/chat/completions", chat("tiny", "stays", 30))
	}()
	queued(t, s, 2)
	before := s.metrics.generatedTokens.Load()
	close(g.release)
	if b := <-g.entered; len(b) != 2 {
		t.Fatalf("a batch of %d, want the two rows", len(b))
	}
	<-first
	cancel2()
	wg.Wait()
	if stayed == nil || answerOf(t, stayed) == "" {
		t.Fatalf("the row that stayed: %v", stayed)
	}
	n := stayed["usage"].(map[string]any)["completion_tokens"].(float64)
	// The gone row stops within a few steps of its client leaving, long before its 200 tokens.
	if got := s.metrics.generatedTokens.Load() - before; got > int64(n)+int64(n)+5 {
		t.Errorf("%d tokens generated for a finished row of %v and a cancelled one", got, n)
	}
}

// After BeginShutdown, requests already admitted finish; new ones get 503 and /health says so.
func TestShutdown(t *testing.T) {
	s, hs := testServer(t, nil)
	g := newGate(s)
	var wg sync.WaitGroup
	var code int
	var out map[string]any
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, out, _ = post(t, hs.URL+"/v1/chat/completions", chat("tiny", "in flight", 5))
	}()
	<-g.entered
	s.BeginShutdown()
	if c, o, h := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "too late", 2)); c != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("new request during shutdown: %d %v", c, o)
	}
	resp, err := http.Get(hs.URL + "/health")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/health during shutdown: %v %v", resp.StatusCode, err)
	}
	close(g.release)
	wg.Wait()
	if code != 200 || answerOf(t, out) == "" {
		t.Errorf("the request in flight: %d %v", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Errorf("the worker did not stop: %v", err)
	}
}

// A request that outlives its deadline is answered 504 and leaves the queue.
func TestDeadline(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.RequestTimeoutS = 1 })
	g := newGate(s)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); post(t, hs.URL+"/v1/chat/completions", chat("tiny", "hold", 2)) }()
	<-g.entered
	code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "waits too long", 2))
	if code != http.StatusGatewayTimeout || out["error"].(map[string]any)["code"] != "deadline_exceeded" {
		t.Errorf("%d %v", code, out)
	}
	if d := s.metrics.queueDepth.Load(); d != 0 {
		t.Errorf("queue depth %d after the deadline", d)
	}
	close(g.release)
	wg.Wait()
}

func metricsText(t *testing.T, base string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
