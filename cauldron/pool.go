package cauldron

import (
	"context"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Item is one processed sample, in stream order.
type Item[T any] struct {
	Ref   Ref
	Value T
	// Cursor is the stream position just after this sample: a checkpoint taken after the
	// consumer has used this item stores it, and a resumed run starts at the next sample.
	Cursor Cursor
}

// PoolOptions size the pool.
type PoolOptions struct {
	// Workers run the processing function concurrently; zero means GOMAXPROCS.
	Workers int
	// Ahead is how many samples may be read and processed before the consumer asks for them
	// (with their images, this is the pool's share of the memory bound); zero means 2×Workers.
	Ahead int
}

// Pool reads a stream on one goroutine and runs the caller's processing (image decoding,
// the image processor, tokenization: the data package's work) on several, ahead of the
// consumer, handing results back in stream order so that a run is reproducible whatever the
// number of workers.
//
// While the pool runs it owns the stream; use the items' cursors, not Stream.Cursor.
type Pool[T any] struct {
	stream  *Stream
	process func(context.Context, *Record) (T, error)
	ctx     context.Context
	cancel  context.CancelFunc
	order   chan *slot[T]
	wg      sync.WaitGroup

	start                   time.Time
	records, skipped, bytes atomic.Int64
	busy, waited            atomic.Int64 // nanoseconds
}

type slot[T any] struct {
	rec    Record
	ref    Ref
	cursor Cursor
	value  T
	err    error
	end    bool // stream error or EOF in err
	done   chan struct{}
}

// NewPool starts reading. process gets each record (it may keep the image bytes) and returns
// the value the consumer will see; returning Skip(reason, err) drops the sample and counts it.
// Any other error ends the stream with that error.
func NewPool[T any](ctx context.Context, s *Stream, process func(context.Context, *Record) (T, error), o PoolOptions) *Pool[T] {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Ahead <= 0 {
		o.Ahead = 2 * o.Workers
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Pool[T]{stream: s, process: process, ctx: ctx, cancel: cancel,
		order: make(chan *slot[T], o.Ahead), start: time.Now()}
	jobs := make(chan *slot[T])
	p.wg.Add(1 + o.Workers)
	go p.dispatch(jobs)
	for range o.Workers {
		go p.work(jobs)
	}
	return p
}

func (p *Pool[T]) dispatch(jobs chan<- *slot[T]) {
	defer p.wg.Done()
	defer close(jobs)
	defer close(p.order)
	for {
		rec, err := p.stream.Next(p.ctx)
		if err != nil {
			sl := &slot[T]{err: err, end: true, done: make(chan struct{})}
			close(sl.done)
			select {
			case p.order <- sl:
			case <-p.ctx.Done():
			}
			return
		}
		sl := &slot[T]{rec: rec, ref: rec.Ref, cursor: p.stream.Cursor().clone(), done: make(chan struct{})}
		// Order first: the bounded order queue is what keeps the pool from running too far ahead.
		select {
		case p.order <- sl:
		case <-p.ctx.Done():
			return
		}
		select {
		case jobs <- sl:
		case <-p.ctx.Done():
			return
		}
	}
}

func (p *Pool[T]) work(jobs <-chan *slot[T]) {
	defer p.wg.Done()
	for sl := range jobs {
		t := time.Now()
		n := sl.rec.ImageBytes()
		sl.value, sl.err = p.safeProcess(&sl.rec)
		sl.rec = Record{}
		p.busy.Add(int64(time.Since(t)))
		p.bytes.Add(n)
		close(sl.done)
	}
}

// safeProcess turns a panic in the caller's processing (a decoder meeting an image it was not
// written for) into a skipped sample: one odd image must not end a long run. The count and
// the log line with the file and row make it visible.
func (p *Pool[T]) safeProcess(r *Record) (v T, err error) {
	defer func() {
		if e := recover(); e != nil {
			err = skipf(ReasonPanic, "processing panicked: %v\n%s", e, debug.Stack())
		}
	}()
	return p.process(p.ctx, r)
}

// Next returns the next processed sample; io.EOF after the last one.
func (p *Pool[T]) Next() (Item[T], error) {
	t := time.Now()
	defer func() { p.waited.Add(int64(time.Since(t))) }()
	for {
		var sl *slot[T]
		var ok bool
		select {
		case sl, ok = <-p.order:
		case <-p.ctx.Done():
			return Item[T]{}, p.ctx.Err()
		}
		if !ok {
			if err := p.ctx.Err(); err != nil {
				return Item[T]{}, err
			}
			return Item[T]{}, io.EOF
		}
		select {
		case <-sl.done:
		case <-p.ctx.Done():
			return Item[T]{}, p.ctx.Err()
		}
		if sl.end {
			return Item[T]{}, sl.err
		}
		if sl.err != nil {
			reason, ok := AsSkip(sl.err)
			if !ok {
				p.cancel()
				return Item[T]{}, sl.err
			}
			st := p.stream.Stats()
			st.retract()
			st.Skipped(reason, 1, sl.ref, sl.err)
			p.skipped.Add(1)
			continue
		}
		p.records.Add(1)
		return Item[T]{Ref: sl.ref, Value: sl.value, Cursor: sl.cursor}, nil
	}
}

// Close stops the workers and waits for them. Items not yet taken are dropped; a resumed run
// starts after the last item taken, from its cursor.
func (p *Pool[T]) Close() {
	p.cancel()
	for range p.order { // unblock the dispatcher
	}
	p.wg.Wait()
}

// Throughput is what the pool has done so far.
type Throughput struct {
	Records       int64         // handed to the consumer
	Skipped       int64         // dropped by the processing function
	ImageBytes    int64         // encoded image bytes processed
	Elapsed       time.Duration // since the pool started
	Busy          time.Duration // summed over workers: processing time
	Waited        time.Duration // consumer time spent in Next: high means the input is the bottleneck
	RecordsPerSec float64
}

func (p *Pool[T]) Throughput() Throughput {
	el := time.Since(p.start)
	t := Throughput{Records: p.records.Load(), Skipped: p.skipped.Load(), ImageBytes: p.bytes.Load(),
		Elapsed: el, Busy: time.Duration(p.busy.Load()), Waited: time.Duration(p.waited.Load())}
	if el > 0 {
		t.RecordsPerSec = float64(t.Records) / el.Seconds()
	}
	return t
}
