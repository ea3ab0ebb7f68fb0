// Package hub downloads model and dataset snapshots from the Hugging Face hub onto a machine
// that has the internet, for the machines that do not: it lists a repository's files through
// the hub's tree API, selects them with fnmatch-style patterns (as huggingface_hub's
// allow_patterns do) or by Cauldron subset and shard number, and fetches them from their
// resolve URLs with resume, size and sha256 checks, into the same layout the hub has, which is
// the layout the cauldron package reads.
//
// Everything but the HTTP calls is pure and unit tested; the HTTP calls are tested against a
// local fake hub.
package hub
