package data

// Batcher groups samples whose padded shapes fall in the same buckets, so that a batch wastes
// little padding and the run compiles few distinct shapes: a sample of 300 tokens and one of
// 1900 never share a batch padded to 2048. Samples wait in their bucket until BatchSize of
// them are there; Flush empties the partial buckets at the end of an epoch.
type Batcher struct {
	Processor *Processor
	Options   CollateOptions
	BatchSize int

	pending map[shapeKey][]*Sample
	order   []shapeKey // buckets in first-seen order, so Flush is deterministic
}

type shapeKey struct{ T, N, H, W int }

// NewBatcher makes a batcher; opt's buckets define the shapes.
func NewBatcher(p *Processor, opt CollateOptions, batchSize int) *Batcher {
	return &Batcher{Processor: p, Options: opt, BatchSize: batchSize, pending: map[shapeKey][]*Sample{}}
}

func (b *Batcher) key(s *Sample) shapeKey {
	k := shapeKey{T: Bucket(len(s.InputIDs), b.Options.SeqBuckets)}
	if len(s.Images) > 0 {
		k.N = Bucket(len(s.Images), b.Options.ImageCountBuckets)
		for _, im := range s.Images {
			k.H, k.W = max(k.H, im.H), max(k.W, im.W)
		}
		k.H, k.W = Bucket(k.H, b.Options.ImageBuckets), Bucket(k.W, b.Options.ImageBuckets)
	}
	return k
}

// Add queues a sample and returns a collated batch when its bucket is full, else nil.
func (b *Batcher) Add(s *Sample) (*Batch, error) {
	k := b.key(s)
	if _, ok := b.pending[k]; !ok {
		b.order = append(b.order, k)
	}
	b.pending[k] = append(b.pending[k], s)
	if len(b.pending[k]) < b.BatchSize {
		return nil, nil
	}
	group := b.pending[k]
	delete(b.pending, k)
	b.dropKey(k)
	return b.Processor.Collate(group, b.Options)
}

// Flush collates what is left, one batch per non-empty bucket.
func (b *Batcher) Flush() ([]*Batch, error) {
	var out []*Batch
	for _, k := range b.order {
		if group := b.pending[k]; len(group) > 0 {
			bt, err := b.Processor.Collate(group, b.Options)
			if err != nil {
				return out, err
			}
			out = append(out, bt)
		}
	}
	b.pending, b.order = map[shapeKey][]*Sample{}, nil
	return out, nil
}

// Pending is the number of samples waiting in partial buckets.
func (b *Batcher) Pending() int {
	n := 0
	for _, g := range b.pending {
		n += len(g)
	}
	return n
}

func (b *Batcher) dropKey(k shapeKey) {
	for i, o := range b.order {
		if o == k {
			b.order = append(b.order[:i], b.order[i+1:]...)
			return
		}
	}
}
