package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate holds the worker before each admission until the test lets it go, so that requests pile
// up in the queue deterministically. live records the rows decoding at each admission.
type gate struct {
	mu      sync.Mutex
	entered chan []*job
	release chan struct{}
	live    []int
}

func newGate(s *Server) *gate {
	g := &gate{entered: make(chan []*job, 16), release: make(chan struct{})}
	s.sched.setBeforeAdmit(func(b []*job, live int) {
		g.mu.Lock()
		g.live = append(g.live, live)
		g.mu.Unlock()
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

// A request that arrives while others decode joins their running batch between two steps, and
// leaves it when done while the others go on. Requests for different models decode side by
// side, each model in its own batch, and sampled requests share a batch with greedy ones: every
// answer equals the answer the request gets alone.
func TestJoinRunningBatch(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.MaxBatch = 8 })
	sampled := func(q string, n int, seed int) map[string]any {
		r := chat("tiny", q, n)
		r["temperature"], r["seed"] = 1.3, seed
		return r
	}
	reqs := []map[string]any{
		chat("tiny", "a long answer, please", 150, pngDataURL(t, 40, 24, 1)),
		chat("tuned", "the adapter's answer", 12, pngDataURL(t, 24, 24, 2)),
		sampled("sampled beside greedy rows", 10, 3),
		chat("tiny", "a short one", 3),
		sampled("another seed", 10, 4),
	}
	alone := make([]string, len(reqs))
	for i, r := range reqs {
		code, out, _ := post(t, hs.URL+"/v1/chat/completions", r)
		if code != 200 {
			t.Fatalf("%d: %v", code, out)
		}
		alone[i] = answerOf(t, out)
	}
	g := newGate(s)
	s.sched.setAfterStep(func() { time.Sleep(2 * time.Millisecond) }) // the long row outlasts the joins
	got := make([]string, len(reqs))
	var wg sync.WaitGroup
	send := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, _ := post(t, hs.URL+"/v1/chat/completions", reqs[i])
			if code != 200 {
				t.Errorf("%d: %v", code, out)
				return
			}
			got[i] = answerOf(t, out)
		}()
	}
	send(0) // the long request starts alone ...
	<-g.entered
	g.release <- struct{}{}
	for i := 1; i < len(reqs); i++ {
		// ... and each other one joins while it decodes.
		send(i)
		<-g.entered
		g.release <- struct{}{}
	}
	close(g.release)
	wg.Wait()
	for i := range reqs {
		if got[i] != alone[i] {
			t.Errorf("request %d: %q in the running batch, %q alone", i, got[i], alone[i])
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Logf("rows decoding at each admission: %v", g.live)
	if g.live[0] != 0 || slices.Min(g.live[1:]) < 1 {
		t.Errorf("rows decoding at each admission: %v; want 0, then ≥ 1 (joining a running batch)", g.live)
	}
}

// With a KV-cache budget of two rows, four requests sent together decode at most two at a time
// and each still gets its answer alone; a request that cannot fit even alone is refused.
func TestKVCacheBudget(t *testing.T) {
	ms := tinyModels(t)
	two := 2*cacheAlone(ms.list[0], 32, 5) + 1024 // two rows of a 64-slot cache (prompts ≤ 32 tokens)
	s, hs := testServer(t, func(o *Options) { o.MaxBatch = 8; o.KVCacheGiB = float64(two) / (1 << 30) })
	questions := []string{"one?", "two?", "three?", "four?"}
	alone := make([]string, len(questions))
	for i, q := range questions {
		code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", q, 5))
		if code != 200 {
			t.Fatalf("%d: %v", code, out)
		}
		alone[i] = answerOf(t, out)
	}
	most := 0
	s.sched.setAfterStep(func() { most = max(most, s.sched.live()) }) // on the worker
	g := newGate(s)
	got := make([]string, len(questions))
	var wg sync.WaitGroup
	for i, q := range questions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", q, 5))
			got[i] = answerOf(t, out)
		}()
		if i == 0 {
			<-g.entered // the first holds the worker until the others wait
		}
	}
	queued(t, s, len(questions)-1)
	go func() {
		for range g.entered {
		}
	}()
	close(g.release)
	wg.Wait()
	for i := range questions {
		if got[i] != alone[i] {
			t.Errorf("%d: %q under the budget, %q alone", i, got[i], alone[i])
		}
	}
	if most != 2 {
		t.Errorf("at most %d rows decoded at once, want 2 (the budget)", most)
	}
	code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "too long for the budget", 200))
	if e, _ := out["error"].(map[string]any); code != 400 || e == nil || !strings.Contains(fmt.Sprint(e["message"]), "kv_cache_gib") {
		t.Errorf("a request over the budget alone: %d %v", code, out)
	}
}

// A decode step that fails (here a panic) ends the requests of that batch with a 500 in
// OpenAI's error shape; the worker goes on and the next request is answered as before.
func TestStepFailure(t *testing.T) {
	s, hs := testServer(t, func(o *Options) { o.MaxBatch = 4 })
	_, want, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "after the failure", 5))
	var once sync.Once
	s.sched.setAfterStep(func() { once.Do(func() { panic("injected fault") }) })
	code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "in the failing step", 5))
	e, _ := out["error"].(map[string]any)
	if code != http.StatusInternalServerError || e == nil || !strings.Contains(fmt.Sprint(e["message"]), "injected fault") {
		t.Errorf("the request of the failed step: %d %v", code, out)
	}
	code, out, _ = post(t, hs.URL+"/v1/chat/completions", chat("tiny", "after the failure", 5))
	if code != 200 || answerOf(t, out) != answerOf(t, want) {
		t.Errorf("after the failure: %d %v, want %q", code, out, answerOf(t, want))
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
// row decodes frees the row before the next step, and the batch's other rows go on.
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
		t.Fatalf("%d requests admitted together, want the two rows", len(b))
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
