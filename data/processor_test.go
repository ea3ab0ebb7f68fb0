package data

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testProcessor(t *testing.T, splitting bool, c Compat) *Processor {
	t.Helper()
	cfg := DefaultImageProcessorConfig()
	cfg.DoImageSplitting = splitting
	p, err := NewProcessor(loadTestTokenizer(t, c), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func grayImage(w, h int, v uint8) *Image {
	img := NewImage(w, h)
	for i := range img.Pix {
		img.Pix[i] = v
	}
	return img
}

func count(ids []int32, id int32) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// Spec §4.1: 66 tokens per image, 326 with splitting, 131 for two adjacent images.
func TestImageTokenCounts(t *testing.T) {
	for _, tc := range []struct {
		split  bool
		images int
		want   int
	}{{false, 1, 66}, {true, 1, 326}, {false, 2, 131}, {true, 2, 651}} {
		p := testProcessor(t, tc.split, CompatTrained)
		content := []Content{}
		imgs := []*Image{}
		for i := 0; i < tc.images; i++ {
			content = append(content, ImageItem())
			imgs = append(imgs, grayImage(40, 30, 9))
		}
		s, err := p.EncodeChat([]Message{{Role: "user", Content: content}}, imgs, EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := count(s.InputIDs, p.Tokenizer.Image) + count(s.InputIDs, p.Tokenizer.FakeImage)
		if got != tc.want {
			t.Errorf("split=%v images=%d: %d image tokens, want %d", tc.split, tc.images, got, tc.want)
		}
		if ImageTokensPerImage(64, tc.split)*tc.images-(tc.images-1) != tc.want {
			t.Errorf("ImageTokensPerImage disagrees")
		}
		if len(s.Images) != tc.images*p.Images.ImagesPerInput() {
			t.Errorf("%d processed images", len(s.Images))
		}
	}
}

func TestImageCountMismatch(t *testing.T) {
	p := testProcessor(t, false, CompatTrained)
	msgs := []Message{{Role: "user", Content: []Content{ImageItem(), Text("a <image> typed by the user counts too")}}}
	_, err := p.EncodeChat(msgs, []*Image{grayImage(4, 4, 0)}, EncodeOptions{})
	if !errors.Is(err, ErrImageCount) || !strings.Contains(err.Error(), "2 <image> placeholders but 1 images") {
		t.Fatalf("got %v", err)
	}
}

func chat() []Message {
	return []Message{
		{Role: "user", Content: []Content{ImageItem(), Text("What is X?")}},
		{Role: "assistant", Content: []Content{Text("42")}},
		{Role: "user", Content: []Content{Text("And Y?")}},
		{Role: "assistant", Content: []Content{Text("Yes, it is.")}},
	}
}

func labelled(p *Processor, s *Sample) string {
	var ids []int32
	for _, l := range s.Labels {
		if l != IgnoreIndex {
			ids = append(ids, l)
		}
	}
	return p.Tokenizer.Decode(ids, false)
}

func TestLabels(t *testing.T) {
	for _, c := range []Compat{CompatTrained, CompatTransformers5} {
		p := testProcessor(t, false, c)
		img := []*Image{grayImage(50, 40, 200)}
		s, err := p.EncodeChat(chat(), img, EncodeOptions{Labels: LabelAnswers})
		if err != nil {
			t.Fatal(err)
		}
		// The decoder strips one leading space: the labelled text is " 42<eou> Yes, it is.<eou>".
		if got, want := labelled(p, s), "42<end_of_utterance> Yes, it is.<end_of_utterance>"; got != want {
			t.Errorf("%v: labelled text %q, want %q", c, got, want)
		}
		// What is labelled is what generation produces after the prompt "...Assistant:".
		gen, _ := p.EncodeChat(chat()[:1], img, EncodeOptions{AddGenerationPrompt: true})
		first := slices.IndexFunc(s.Labels, func(l int32) bool { return l != IgnoreIndex })
		if first != len(gen.InputIDs) || !slices.Equal(s.InputIDs[:first], gen.InputIDs) {
			t.Errorf("%v: first label at %d, generation prompt has %d tokens", c, first, len(gen.InputIDs))
		}
		all, _ := p.EncodeChat(chat(), img, EncodeOptions{Labels: LabelAll})
		if count(all.Labels, IgnoreIndex) != 64 || all.Labels[0] != 1 {
			t.Errorf("%v: LabelAll must ignore exactly the 64 <image> tokens", c)
		}
	}
}

func TestOverflow(t *testing.T) {
	p := testProcessor(t, false, CompatTrained)
	img := []*Image{grayImage(50, 40, 200)}
	full, _ := p.EncodeChat(chat(), img, EncodeOptions{Labels: LabelAnswers})
	short, _ := p.EncodeChat(chat()[:2], img, EncodeOptions{Labels: LabelAnswers})
	limit := len(full.InputIDs) - 1

	_, err := p.EncodeChat(chat(), img, EncodeOptions{Labels: LabelAnswers, MaxLength: limit})
	if !errors.Is(err, ErrTooLong) || p.Stats().Skipped != 1 {
		t.Fatalf("skip: %v %+v", err, p.Stats())
	}
	s, err := p.EncodeChat(chat(), img, EncodeOptions{Labels: LabelAnswers, MaxLength: limit, Overflow: OverflowDropTurns})
	if err != nil || s.DroppedTurns != 2 || !slices.Equal(s.InputIDs, short.InputIDs) || p.Stats().Truncated != 1 {
		t.Fatalf("drop turns: %v dropped=%v %+v", err, s, p.Stats())
	}
	// Shorter than the first exchange, which holds the image: skipped, the image is never cut.
	_, err = p.EncodeChat(chat(), img, EncodeOptions{Labels: LabelAnswers, MaxLength: 60, Overflow: OverflowDropTurns})
	if !errors.Is(err, ErrTooLong) || p.Stats().Skipped != 2 {
		t.Fatalf("too short for any turn: %v %+v", err, p.Stats())
	}
	// A dropped turn takes its images with it.
	msgs := append(chat(), Message{Role: "user", Content: []Content{ImageItem(), Text("Z?")}}, Message{Role: "assistant", Content: []Content{Text("No.")}})
	s, err = p.EncodeChat(msgs, []*Image{img[0], grayImage(30, 30, 1)}, EncodeOptions{Labels: LabelAnswers, MaxLength: limit + 1, Overflow: OverflowDropTurns})
	if err != nil || len(s.Images) != 1 || s.DroppedTurns != 2 {
		t.Fatalf("images of dropped turns: %v dropped=%d images=%d", err, s.DroppedTurns, len(s.Images))
	}
}

func TestEncodeText(t *testing.T) {
	p := testProcessor(t, false, CompatTrained)
	s, err := p.EncodeText("<image>In this image", []*Image{grayImage(10, 10, 3)}, EncodeOptions{Labels: LabelAll})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Tokenizer.Decode(s.InputIDs, true); got != "In this image" {
		t.Errorf("decoded %q", got)
	}
	if _, err := p.EncodeText("x", nil, EncodeOptions{Labels: LabelAnswers}); err == nil {
		t.Error("LabelAnswers without turns must be an error")
	}
}

func TestCollateRightPaddingAndBuckets(t *testing.T) {
	p := testProcessor(t, false, CompatTrained)
	a, _ := p.EncodeChat(chat()[:2], []*Image{grayImage(500, 400, 10)}, EncodeOptions{Labels: LabelAnswers})
	b, _ := p.EncodeChat([]Message{{Role: "user", Content: []Content{Text("hi")}}, {Role: "assistant", Content: []Content{Text("ho")}}}, nil, EncodeOptions{Labels: LabelAnswers})
	bt, err := p.Collate([]*Sample{a, b}, CollateOptions{PadSide: PadRight, SeqBuckets: []int{64, 128, 256}, ImageBuckets: []int{378, 490, 616, 980}, ImageCountBuckets: []int{1, 2, 5}})
	if err != nil {
		t.Fatal(err)
	}
	if bt.T != 128 || bt.N != 1 || bt.H != 490 || bt.W != 616 {
		t.Fatalf("shape T=%d N=%d H=%d W=%d", bt.T, bt.N, bt.H, bt.W)
	}
	row1 := bt.InputIDs[bt.T : 2*bt.T]
	if !slices.Equal(row1[:len(b.InputIDs)], toI64(b.InputIDs)) || row1[len(b.InputIDs)] != int64(p.Tokenizer.Pad) || bt.AttentionMask[bt.T+len(b.InputIDs)] != 0 {
		t.Error("right padding wrong")
	}
	if bt.Labels[bt.T+len(b.InputIDs)] != IgnoreIndex {
		t.Error("labels at padding must be ignored")
	}
	// Sample b has no image: its slot is all zeros with an all-zero mask.
	plane := bt.H * bt.W
	if slices.ContainsFunc(bt.PixelValues[3*plane:], func(v float32) bool { return v != 0 }) || slices.Contains(bt.PixelAttentionMask[plane:], int64(1)) {
		t.Error("missing image slot not zero")
	}
	if bt.PixelAttentionMask[399*bt.W+499] != 1 || bt.PixelAttentionMask[400*bt.W] != 0 || bt.PixelAttentionMask[500] != 0 {
		t.Error("pixel mask bounds wrong")
	}
	w := bt.Waste
	if w.RealTokens != int64(len(a.InputIDs)+len(b.InputIDs)) || w.PaddedTokens != 256 || w.RealPixels != 500*400 || w.PaddedPixels != int64(2*plane) {
		t.Errorf("waste %+v", w)
	}
	if !strings.Contains(w.String(), "token positions") {
		t.Error(w.String())
	}
}

func TestBucket(t *testing.T) {
	b := []int{512, 128, 1024}
	for n, want := range map[int]int{1: 128, 128: 128, 129: 512, 1024: 1024, 1025: 1025} {
		if got := Bucket(n, b); got != want {
			t.Errorf("Bucket(%d) = %d, want %d", n, got, want)
		}
	}
}

func toI64(v []int32) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// CollateInto over a dirty batch with bigger buffers gives exactly what a fresh Collate gives.
func TestCollateIntoReuse(t *testing.T) {
	p := testProcessor(t, true, CompatTrained)
	big, _ := p.EncodeChat(chat()[:2], []*Image{grayImage(900, 700, 250)}, EncodeOptions{Labels: LabelAnswers})
	small, _ := p.EncodeChat(chat()[:2], []*Image{grayImage(300, 200, 7)}, EncodeOptions{})
	other, _ := p.EncodeChat([]Message{{Role: "user", Content: []Content{Text("x")}}}, nil, EncodeOptions{})
	dst, _ := p.Collate([]*Sample{big, big}, CollateOptions{})
	for i := range dst.PixelValues {
		dst.PixelValues[i] = 7
	}
	got, _ := p.CollateInto(dst, []*Sample{small, other}, CollateOptions{PadSide: PadLeft})
	want, _ := p.Collate([]*Sample{small, other}, CollateOptions{PadSide: PadLeft})
	if got.B != want.B || got.T != want.T || got.N != want.N || got.H != want.H || got.W != want.W ||
		!slices.Equal(got.InputIDs, want.InputIDs) || !slices.Equal(got.AttentionMask, want.AttentionMask) ||
		got.Labels != nil || !slices.Equal(got.PixelValues, want.PixelValues) || !slices.Equal(got.PixelAttentionMask, want.PixelAttentionMask) ||
		got.Waste != want.Waste {
		t.Fatal("reused batch differs from a fresh one")
	}
}

func TestLoadProcessor(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(testTokenizerDir(t), f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	// The idefics2-8b preprocessor_config.json (spec §3.1) and processor_config.json.
	os.WriteFile(filepath.Join(dir, "preprocessor_config.json"), []byte(`{"do_convert_rgb": true, "do_image_splitting": true,
		"do_normalize": true, "do_pad": true, "do_rescale": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5],
		"image_processor_type": "Idefics2ImageProcessor", "image_std": [0.5, 0.5, 0.5], "processor_class": "Idefics2Processor",
		"resample": 2, "rescale_factor": 0.00392156862745098, "size": {"longest_edge": 980, "shortest_edge": 378}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "processor_config.json"), []byte(`{"image_seq_len": 64, "processor_class": "Idefics2Processor"}`), 0o644)
	p, err := LoadProcessor(dir, CompatTrained)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Tokenizer.Close()
	if !p.Images.DoImageSplitting || p.ImageSeqLen != 64 || p.Images.RescaleFactor != 1.0/255 {
		t.Errorf("%+v seq %d", p.Images, p.ImageSeqLen)
	}
	os.WriteFile(filepath.Join(dir, "preprocessor_config.json"), []byte(`{"resample": 3}`), 0o644)
	if _, err := LoadProcessor(dir, CompatTrained); err == nil || !strings.Contains(err.Error(), "resample=3") {
		t.Errorf("unsupported resample must be refused: %v", err)
	}
}

// Data loaders encode from several goroutines with one processor.
func TestConcurrentEncode(t *testing.T) {
	p := testProcessor(t, true, CompatTrained)
	want, _ := p.EncodeChat(chat(), []*Image{grayImage(500, 300, 90)}, EncodeOptions{Labels: LabelAnswers})
	wantB, _ := p.Collate([]*Sample{want}, CollateOptions{})
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			s, err := p.EncodeChat(chat(), []*Image{grayImage(500, 300, 90)}, EncodeOptions{Labels: LabelAnswers})
			if err == nil {
				var b *Batch
				if b, err = p.Collate([]*Sample{s}, CollateOptions{}); err == nil &&
					(!slices.Equal(b.InputIDs, wantB.InputIDs) || !slices.Equal(b.PixelValues, wantB.PixelValues)) {
					err = errors.New("concurrent result differs")
				}
			}
			errs <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
