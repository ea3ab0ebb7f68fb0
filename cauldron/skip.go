package cauldron

import (
	"errors"
	"fmt"
)

// Reason says why a record was skipped. Long runs must survive bad data, so a bad record is
// never fatal: it is skipped, counted under its reason and logged with its file and row.
type Reason string

const (
	// ReasonNullField: a required field (images, texts, a user/assistant text, a question, an
	// image's bytes and path) is null.
	ReasonNullField Reason = "null_field"
	// ReasonEmptyField: a required list or text is present but empty.
	ReasonEmptyField Reason = "empty_field"
	// ReasonImageCount: the text's <image> placeholders (or a chat's image items) disagree with
	// the number of images.
	ReasonImageCount Reason = "image_count_mismatch"
	// ReasonBadImage: the caller's validation or processing could not use an image (corrupt
	// bytes), or an image path could not be read.
	ReasonBadImage Reason = "bad_image"
	// ReasonBadJSON: a JSONL line or a JSON messages value does not parse.
	ReasonBadJSON Reason = "bad_json"
	// ReasonReadError: a row group could not be read (a damaged page); its rows are counted.
	ReasonReadError Reason = "read_error"
	// ReasonPanic: the caller's processing function panicked on the record.
	ReasonPanic Reason = "processing_panic"
	// ReasonTruncatedFile: a whole file could not be opened (no parquet footer); counted once
	// per file, since its rows are unknown.
	ReasonTruncatedFile Reason = "truncated_file"
)

// SkipError marks an error as "skip this record": the pool and the stream count it under
// Reason and go on, where any other error stops them.
type SkipError struct {
	Reason Reason
	Err    error
}

func (e *SkipError) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return fmt.Sprintf("%s: %v", e.Reason, e.Err)
}

func (e *SkipError) Unwrap() error { return e.Err }

// Skip wraps err so that the record it concerns is skipped and counted under reason. A
// processing function returns Skip(ReasonBadImage, err) when an image fails to decode.
func Skip(reason Reason, err error) error { return &SkipError{Reason: reason, Err: err} }

func skipf(reason Reason, format string, args ...any) error {
	return &SkipError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// AsSkip reports whether err asks for a skip, and its reason.
func AsSkip(err error) (Reason, bool) {
	var s *SkipError
	if errors.As(err, &s) {
		return s.Reason, true
	}
	return "", false
}
