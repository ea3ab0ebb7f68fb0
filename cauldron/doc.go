// Package cauldron is where training and evaluation samples come from: The Cauldron's parquet
// subsets, lmms-lab's DocVQA and TextVQA evaluation sets, and custom datasets (parquet with
// configurable columns, or JSONL with image files beside it).
//
// It owns reading (row group by row group, so memory is bounded by a few row groups whatever a
// shard's size), mixing sources by weight, a windowed shuffle, epochs, sharding by data-parallel
// rank, a JSON cursor that resumes on exactly the next sample, the bad-record policy (skip, count
// by reason, log with file and row) and a worker pool that runs the caller's processing ahead of
// the consumer.
//
// It hands out Records: encoded image bytes and text turns or questions. It never decodes an
// image or tokenizes text; that is the data package's work, plugged in through Pool's process
// function or a Validate hook.
package cauldron
