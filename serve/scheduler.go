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

	// events carries every new token, then one final event. It has room for all of them, so
	// the worker never waits on a slow client.
	events   chan tokenEvent
	abandon  atomic.Bool // set by the request's goroutine once it wants no more tokens
	enqueued time.Time

	row *model.Row // its row in the running batch, once admitted
}

// gone reports whether the request's client wants no more tokens.
func (j *job) gone() bool { return j.ctx.Err() != nil || j.abandon.Load() }

// batch is a model's running batch and the requests decoding in it, in admission order.
type batch struct {
	run  *model.Running
	jobs []*job
}

type tokenEvent struct {
	tok  int32
	done bool
	err  error
}

// Scheduler queues admitted requests and decodes them on one worker with continuous batching:
// between two decode steps it admits waiting requests into the running batch of their model
// (each is prefilled alone, its image features computed once, and its KV cache placed in a free
// row), and a row leaves the batch as soon as it is done (eos, its own token budget, a stop
// string, a client gone, its deadline). Rows with different decoding settings share a batch:
// tokens are chosen per row on the host, each sampled row from its own seeded stream, so a
// request's answer is the same alone or in a batch.
//
// Each model (the base, every adapter) has its own running batch; the worker steps them in
// turn. At most maxBatch rows decode at once over all of them; the rest wait in a bounded
// queue.
type Scheduler struct {
	models    *Models
	queueSize int
	maxBatch  int
	kvBudget  int64 // bytes of KV cache over all running batches; 0: no bound
	batchWait time.Duration
	metrics   *metrics

	mu      sync.Mutex
	cond    *sync.Cond
	pending []*job
	closed  bool
	done    chan struct{}

	// The worker's own state: each model's running batch, present while it has rows.
	batches map[*servedModel]*batch

	// beforeAdmit, when set (tests, through setBeforeAdmit), runs on the worker before it admits
	// a group of waiting requests; live is the number of rows decoding then.
	beforeAdmit func(group []*job, live int)
	// afterStep, when set (tests), runs on the worker after each decode step, as part of it: a
	// panic there is a failed step.
	afterStep func()
}

func (s *Scheduler) setBeforeAdmit(f func(group []*job, live int)) {
	s.mu.Lock()
	s.beforeAdmit = f
	s.mu.Unlock()
}

func (s *Scheduler) setAfterStep(f func()) {
	s.mu.Lock()
	s.afterStep = f
	s.mu.Unlock()
}

func newScheduler(ms *Models, o Options, m *metrics) *Scheduler {
	s := &Scheduler{models: ms, queueSize: o.QueueSize, maxBatch: o.MaxBatch, kvBudget: int64(o.KVCacheGiB * (1 << 30)),
		batchWait: time.Duration(o.BatchWaitMS) * time.Millisecond, metrics: m, done: make(chan struct{}),
		batches: map[*servedModel]*batch{}}
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

func (s *Scheduler) loop() {
	defer close(s.done)
	for {
		group, hook, after, ok := s.take(s.live())
		if !ok {
			return
		}
		if len(group) > 0 {
			if hook != nil {
				hook(group, s.live())
			}
			for _, j := range group {
				s.admit(j)
			}
		}
		for m := range s.batches {
			s.step(m, after)
		}
		s.metrics.batchRows.Store(int64(s.live()))
	}
}

// live is the number of rows decoding over all models.
func (s *Scheduler) live() int {
	n := 0
	for _, b := range s.batches {
		n += len(b.jobs)
	}
	return n
}

// take returns the waiting requests that fit beside the live rows, oldest first. With no live
// row it blocks until a request waits, then lets more arrive for batchWait so that requests
// sent together start together. ok is false once the scheduler is closed and nothing is left.
func (s *Scheduler) take(live int) (group []*job, hook func([]*job, int), after func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if live == 0 {
		for len(s.pending) == 0 && !s.closed {
			s.cond.Wait()
		}
		if len(s.pending) == 0 {
			return nil, nil, nil, false
		}
		if s.batchWait > 0 && len(s.pending) < s.maxBatch && !s.closed {
			s.mu.Unlock()
			time.Sleep(s.batchWait)
			s.mu.Lock()
		}
	}
	n := s.fitting(min(len(s.pending), s.maxBatch-live))
	if n <= 0 {
		return nil, nil, s.afterStep, true
	}
	group = append(group, s.pending[:n]...)
	s.pending = append([]*job(nil), s.pending[n:]...)
	s.metrics.queueDepth.Store(int64(len(s.pending)))
	return group, s.beforeAdmit, s.afterStep, true
}

// fitting is how many of the first n waiting requests can join their running batches, in
// order, with the KV caches of all batches within the budget. The oldest request that does not
// fit stops the count, so that a large request is not passed over for ever.
func (s *Scheduler) fitting(n int) int {
	if s.kvBudget <= 0 {
		return n
	}
	sizes := map[*servedModel]model.Size{}
	plans := map[*servedModel]*model.Running{}
	var total int64
	for m, b := range s.batches {
		sizes[m], plans[m] = b.run.Size(), b.run
		total += b.run.CacheBytes(b.run.Size())
	}
	for i, j := range s.pending[:n] {
		plan := plans[j.model]
		if plan == nil {
			plan = newRunning(j.model)
			plans[j.model] = plan
		}
		cur := sizes[j.model]
		next := plan.After(cur, 1, len(j.sample.InputIDs), j.gc.MaxNewTokens)
		grown := total - plan.CacheBytes(cur) + plan.CacheBytes(next)
		if grown > s.kvBudget {
			return i
		}
		sizes[j.model], total = next, grown
	}
	return n
}

// newRunning is an empty running batch of m, as the scheduler runs them.
func newRunning(m *servedModel) *model.Running {
	run := m.Generator.NewRunning()
	run.Buckets = true
	return run
}

// cacheAlone is the KV cache a request of T prompt tokens and maxNew new ones needs alone.
func cacheAlone(m *servedModel, T, maxNew int) int64 {
	run := newRunning(m)
	return run.CacheBytes(run.After(run.Size(), 1, T, maxNew))
}

// admit prefills j into its model's running batch, which gives j its first token at once, or
// ends it when its client is gone or the prefill fails (a panic included: the server goes on).
func (s *Scheduler) admit(j *job) {
	if j.gone() {
		j.events <- tokenEvent{done: true, err: j.ctx.Err()}
		return
	}
	s.metrics.queueWait.observe(time.Since(j.enqueued).Seconds())
	bt := s.batches[j.model]
	if bt == nil {
		bt = &batch{run: newRunning(j.model)}
		s.batches[j.model] = bt
	}
	b, err := s.models.processor().Collate([]*data.Sample{j.sample}, data.CollateOptions{PadSide: data.PadLeft})
	if err == nil {
		err = guard(func() error {
			rows, err := bt.run.Admit(eval.InputsOf(b), j.gc, func(_ int, tok int32) bool { return s.deliver(j, tok) })
			if err == nil {
				j.row = rows[0]
			}
			return err
		})
	}
	switch {
	case err != nil:
		j.events <- tokenEvent{done: true, err: err}
		if bt.run.Live() != len(bt.jobs) {
			s.fail(j.model, err) // the running batch did not survive the failure
		}
	case j.row.Done: // its first token was its last
		j.events <- tokenEvent{done: true, err: j.ctx.Err()}
	default:
		bt.jobs = append(bt.jobs, j)
	}
}

// deliver passes one new token of j to its client; false retires the row (the client is gone;
// the row's own budget retires it in model.Running).
func (s *Scheduler) deliver(j *job, tok int32) bool {
	if j.gone() {
		return false
	}
	s.metrics.generatedTokens.Add(1)
	j.events <- tokenEvent{tok: tok}
	return true
}

// step drops the rows whose clients left, runs one decode step of m's running batch (then
// after, when set) and ends the requests whose rows are done; a batch left without rows goes. A
// failed step, a panic included, ends every request of m's batch with the error; the worker goes
// on.
func (s *Scheduler) step(m *servedModel, after func()) {
	bt := s.batches[m]
	run, jobs := bt.run, bt.jobs
	for _, j := range jobs {
		if j.gone() {
			run.Drop(j.row)
		}
	}
	if len(jobs) > 0 {
		s.metrics.batchSize.observe(float64(run.Live()))
	}
	err := guard(func() error {
		if _, err := run.Step(); err != nil {
			return err
		}
		if after != nil {
			after()
		}
		return nil
	})
	if err != nil {
		s.fail(m, err)
		return
	}
	kept := jobs[:0]
	for _, j := range jobs {
		if j.row.Done {
			j.events <- tokenEvent{done: true, err: j.ctx.Err()}
			continue
		}
		kept = append(kept, j)
	}
	bt.jobs = kept
	if len(kept) == 0 {
		delete(s.batches, m)
	}
}

// fail ends every request decoding on m with err and starts m's batch afresh.
func (s *Scheduler) fail(m *servedModel, err error) {
	if bt := s.batches[m]; bt != nil {
		for _, j := range bt.jobs {
			j.events <- tokenEvent{done: true, err: err}
		}
		bt.run.Close()
	}
	delete(s.batches, m)
}

// guard runs f, turning a panic into an error.
func guard(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoding failed: %v", p)
		}
	}()
	return f()
}
