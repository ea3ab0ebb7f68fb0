// Package data turns what a dataset holds (image bytes and chat turns) into the exact model
// inputs Hugging Face's Idefics2Processor produces, and batches them.
//
// It owns:
//   - image decoding (PNG, JPEG, WebP, GIF, BMP, TIFF) with Pillow's pixels, EXIF orientation,
//     and the two RGB conversions HF applies depending on the entry point (alpha dropped by the
//     processor's load_image, or composited over white by the image processor alone);
//   - the Idefics2 image processor: resize-size rule, Pillow's BILINEAR resampling bit for bit,
//     image splitting, rescale and normalize, padding with pixel_attention_mask;
//   - the tokenizer (HF tokenizer.json through daulet/tokenizers), the Idefics2 chat template,
//     the <image> placeholder expansion, and label masking;
//   - collation into padded, shape-bucketed batches, with the padding waste counted.
//
// It does not read datasets from disk: callers hand it bytes and messages.
//
// It needs cgo, as the tokenizer does: JPEG and WebP are decoded by libjpeg-turbo and libwebp
// (the libraries Pillow uses; `make setup` installs their Debian packages), and the vertical
// resampling pass is vectorized C.
//
// The reference for every number this package produces is HF transformers' Idefics2Processor
// with the PIL image processor; scripts/make_processor_fixtures.py writes the fixtures that
// the tests compare against.
package data
