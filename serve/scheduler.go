package serve

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
	"github.com/idefics2/idefics2/model"
)

// job is one admitted request: its encoded prompt and images, its decoding rules and the channel
// its tokens come back on.
type job struct {
	ctx    context.Context
	model  *servedModel
	sample *data.Sample
	gc     model.GenerationConfig // MaxNewTokens is this request's own budget
	key    string                 // requests with equal keys may share a batch

	// events carries every new token, then one final event. It has room for all of them, so
	// the worker never waits on a slow client.
	events   chan tokenEvent
	abandon  atomic.Bool // set by the request's goroutine once it wants no more tokens
	enqueued time.Time
}

type tokenEvent struct {
	tok  int32
	done bool
	err  error
}

// Scheduler queues admitted requests and decodes them on one worker, in batches of requests
// that can share a Generator call: the same model and the same decoding settings. A sampled
// request runs in a batch of its own, so that its seed alone fixes its output.
//
// This is request-level batching: a batch runs until all of its rows are done (eos, their own
// token budget, a stop string, or a client gone), and requests that arrive meanwhile wait for
// the next one. A retired row costs nothing more to its client but still occupies its place in
// the running batch's tensors until the batch ends.
type Scheduler struct {
	models    *Models
	queueSize int
	maxBatch  int
	padBatch  bool
	batchWait time.Duration
	metrics   *metrics

	mu      sync.Mutex
	cond    *sync.Cond
	pending []*job
	closed  bool
	seq     uint64
	done    chan struct{}

	// beforeBatch, when set (tests, through setBeforeBatch), runs on the worker before each
	// batch is decoded.
	beforeBatch func(batch []*job)
}

func (s *Scheduler) setBeforeBatch(f func(batch []*job)) {
	s.mu.Lock()
	s.beforeBatch = f
	s.mu.Unlock()
}

func newScheduler(ms *Models, o Options, m *metrics) *Scheduler {
	s := &Scheduler{models: ms, queueSize: o.QueueSize, maxBatch: o.MaxBatch, padBatch: o.PadBatch,
		batchWait: time.Duration(o.BatchWaitMS) * time.Millisecond, metrics: m, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

// submit admits j, or refuses it when the queue is full or the server is closing.
func (s *Scheduler) submit(j *job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	if len(s.pending) >= s.queueSize {
		return errQueueFull
	}
	s.seq++
	j.key = batchKey(j, s.seq)
	j.events = make(chan tokenEvent, j.gc.MaxNewTokens+2)
	j.enqueued = time.Now()
	s.pending = append(s.pending, j)
	s.metrics.queueDepth.Store(int64(len(s.pending)))
	s.cond.Signal()
	return nil
}

// withdraw takes a job out of the queue when its client gave up before it started; it reports
// whether the job was still waiting.
func (s *Scheduler) withdraw(j *job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p == j {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			s.metrics.queueDepth.Store(int64(len(s.pending)))
			return true
		}
	}
	return false
}

// close refuses new requests; the worker finishes what is queued, then stops.
func (s *Scheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// wait returns when the worker has stopped (after close) or ctx ends.
func (s *Scheduler) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batchKey groups requests that one Generator call can decode: the model and every decoding
// setting but the token budget (each row retires at its own). A sampled request gets a key of
// its own: rows of a batch share the sampler's random stream.
func batchKey(j *job, seq uint64) string {
	c := j.gc
	k := fmt.Sprintf("%s|%v|%g|%d|%g|%g", j.model.Name, c.DoSample, c.Temperature, c.TopK, c.TopP, c.RepetitionPenalty)
	if c.DoSample {
		k += fmt.Sprintf("|%d", seq)
	}
	return k
}

func (s *Scheduler) loop() {
	defer close(s.done)
	for {
		batch, hook := s.next()
		if batch == nil {
			return
		}
		s.run(batch, hook)
	}
}

// next blocks until a request waits, lets the batch fill for batchWait, then takes the oldest
// request and the waiting requests that share its key (up to maxBatch). It returns nil once the
// scheduler is closed and the queue is empty.
func (s *Scheduler) next() ([]*job, func([]*job)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pending) == 0 && !s.closed {
		s.cond.Wait()
	}
	if len(s.pending) == 0 {
		return nil, nil
	}
	if s.batchWait > 0 && len(s.pending) < s.maxBatch && !s.closed {
		s.mu.Unlock()
		time.Sleep(s.batchWait)
		s.mu.Lock()
		if len(s.pending) == 0 {
			return []*job{}, nil
		}
	}
	key := s.pending[0].key
	var batch, rest []*job
	for _, j := range s.pending {
		if j.key == key && len(batch) < s.maxBatch {
			batch = append(batch, j)
		} else {
			rest = append(rest, j)
		}
	}
	s.pending = rest
	s.metrics.queueDepth.Store(int64(len(s.pending)))
	return batch, s.beforeBatch
}

// run decodes one batch, sending each row's tokens as they come. Any failure, a panic included,
// ends every row of the batch with the error; the server goes on.
func (s *Scheduler) run(batch []*job, hook func([]*job)) {
	var live []*job
	for _, j := range batch {
		if j.ctx.Err() != nil || j.abandon.Load() {
			j.events <- tokenEvent{done: true, err: j.ctx.Err()}
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	batch = live
	if hook != nil {
		hook(batch)
	}
	start := time.Now()
	for _, j := range batch {
		s.metrics.queueWait.observe(start.Sub(j.enqueued).Seconds())
	}
	s.metrics.batchSize.observe(float64(len(batch)))
	s.metrics.batchRows.Store(int64(len(batch)))
	defer s.metrics.batchRows.Store(0)
	finished := make([]bool, len(batch))
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("decoding failed: %v", p)
			}
		}()
		err = s.decode(batch, finished)
	}()
	for i, j := range batch {
		if !finished[i] {
			j.events <- tokenEvent{done: true, err: err}
		}
	}
}

func (s *Scheduler) decode(batch []*job, finished []bool) error {
	samples := make([]*data.Sample, len(batch))
	gc := batch[0].gc
	gc.MaxNewTokens = 0
	for i, j := range batch {
		samples[i] = j.sample
		gc.MaxNewTokens = max(gc.MaxNewTokens, j.gc.MaxNewTokens)
	}
	if s.padBatch {
		for rows := padRows(len(batch), s.maxBatch); len(samples) < rows; {
			samples = append(samples, batch[0].sample)
		}
	}
	b, err := s.models.processor().Collate(samples, data.CollateOptions{PadSide: data.PadLeft})
	if err != nil {
		return err
	}
	counts := make([]int, len(batch))
	_, err = batch[0].model.Generator.GenerateEach(eval.InputsOf(b), gc, func(row int, tok int32) bool {
		if row >= len(batch) {
			return false // a padding row
		}
		j := batch[row]
		if j.ctx.Err() != nil || j.abandon.Load() {
			return false
		}
		counts[row]++
		s.metrics.generatedTokens.Add(1)
		j.events <- tokenEvent{tok: tok}
		return counts[row] < j.gc.MaxNewTokens
	})
	if err != nil {
		return err
	}
	for i, j := range batch {
		j.events <- tokenEvent{done: true, err: j.ctx.Err()}
		finished[i] = true
	}
	return nil
}

// padRows is the power of two at or above n, capped at limit (and never below n).
func padRows(n, limit int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return max(n, min(p, limit))
}
