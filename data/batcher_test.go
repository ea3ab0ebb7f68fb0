package data

import "testing"

func TestBatcherGroupsByShape(t *testing.T) {
	p := testProcessor(t, false, CompatTrained)
	opt := CollateOptions{PadSide: PadRight, SeqBuckets: []int{128, 256}, ImageBuckets: []int{378, 980}, ImageCountBuckets: []int{1, 2}}
	bt := NewBatcher(p, opt, 2)
	small, _ := p.EncodeChat(chat()[:2], []*Image{grayImage(300, 300, 1)}, EncodeOptions{Labels: LabelAnswers})
	large, _ := p.EncodeChat(chat()[:2], []*Image{grayImage(900, 600, 1)}, EncodeOptions{Labels: LabelAnswers})
	if b, _ := bt.Add(small); b != nil {
		t.Fatal("batch before the bucket is full")
	}
	if b, _ := bt.Add(large); b != nil {
		t.Fatal("samples of different image buckets must not share a batch")
	}
	b, err := bt.Add(small)
	if err != nil || b == nil || b.B != 2 || b.H != 378 || b.W != 378 || b.T != 128 {
		t.Fatalf("full bucket: %v %+v", err, b)
	}
	rest, _ := bt.Flush()
	if len(rest) != 1 || rest[0].B != 1 || rest[0].H != 980 || rest[0].W != 980 || bt.Pending() != 0 {
		t.Fatalf("flush: %d batches", len(rest))
	}
}
