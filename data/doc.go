// Package data turns what a dataset holds (image bytes and chat turns) into the exact model
// inputs Hugging Face's Idefics2Processor produces, and batches them.
//
// It owns:
//   - image decoding (PNG, JPEG through libjpeg-turbo like Pillow, WebP, GIF, BMP, TIFF) and the
//     mode conversion HF applies before anything else (transparency over white, grayscale,
//     palette, CMYK);
//   - the Idefics2 image processor: resize-size rule, Pillow's BILINEAR resampling bit for bit,
//     image splitting, rescale and normalize, padding with pixel_attention_mask;
//   - the tokenizer (HF tokenizer.json through daulet/tokenizers), the Idefics2 chat template,
//     the <image> placeholder expansion, and label masking;
//   - collation into padded, shape-bucketed batches, with the padding waste counted.
//
// It does not read datasets from disk: callers hand it bytes and messages.
//
// The reference for every number this package produces is HF transformers' Idefics2Processor
// with the PIL image processor; scripts/make_processor_fixtures.py writes the fixtures that
// the tests compare against.
package data
