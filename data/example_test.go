package data_test

import (
	"fmt"
	"os"

	"github.com/idefics2/idefics2/data"
)

// From image bytes and chat messages to a padded training batch.
func Example() {
	tok, err := data.LoadTokenizer("../testdata/tokenizer/idefics2", data.CompatTrained)
	if err != nil {
		panic(err)
	}
	defer tok.Close()
	cfg := data.DefaultImageProcessorConfig() // or data.LoadImageProcessorConfig("preprocessor_config.json")
	p, err := data.NewProcessor(tok, cfg)
	if err != nil {
		panic(err)
	}

	raw, _ := os.ReadFile("../testdata/pillow/decode/rocket.jpg") // bytes as a dataset holds them
	img, err := data.DecodeImage(raw)                             // EXIF orientation + RGB, like HF's load_image
	if err != nil {
		panic(err)
	}
	msgs := []data.Message{
		{Role: "user", Content: []data.Content{data.ImageItem(), data.Text("What is launching?")}},
		{Role: "assistant", Content: []data.Content{data.Text("A rocket.")}},
	}
	s, err := p.EncodeChat(msgs, []*data.Image{img}, data.EncodeOptions{Labels: data.LabelAnswers, MaxLength: 2048})
	if err != nil {
		panic(err)
	}
	b, err := p.Collate([]*data.Sample{s}, data.CollateOptions{PadSide: data.PadRight, SeqBuckets: []int{128, 512, 2048}})
	if err != nil {
		panic(err)
	}
	fmt.Printf("input_ids [%d %d], pixel_values [%d %d 3 %d %d]\n", b.B, b.T, b.B, b.N, b.H, b.W)
	var target []int32 // what the loss trains on: the answer and its closing <end_of_utterance>
	for _, l := range s.Labels {
		if l != data.IgnoreIndex {
			target = append(target, l)
		}
	}
	fmt.Printf("%q\n", tok.Decode(target, false))
	fmt.Println(b.Waste)
	// Output:
	// input_ids [1 128], pixel_values [1 1 3 427 640]
	// "A rocket.<end_of_utterance>"
	// padding: 32.0% of 128 token positions, 0.0% of 273280 pixel positions
}
