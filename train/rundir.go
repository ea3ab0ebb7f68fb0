package train

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// An output directory holds one run. run.json names it with a random id that every checkpoint
// repeats, so --resume can tell its own checkpoints from anything else found there, and a fresh
// run refuses a directory that holds an earlier one instead of truncating its metrics and
// mixing checkpoints of both (keep_last would then prune by step number across the two runs).
const runFile = "run.json"

// RunInfo is run.json.
type RunInfo struct {
	ID      string `json:"run_id"`
	Started string `json:"started"`
}

// OutputMode says what a run may do with an output directory that is not empty.
type OutputMode int

const (
	OutputFresh     OutputMode = iota // refuse a directory holding an earlier run
	OutputResume                      // continue the run the directory holds
	OutputOverwrite                   // delete the earlier run's files first
)

// runArtifact tells whether a name in the output directory is something a run writes.
func runArtifact(name string) bool {
	switch name {
	case runFile, "metrics.jsonl", "adapter", "loss.png":
		return true
	}
	return strings.HasPrefix(name, checkpointPrefix) || strings.HasPrefix(name, "eval-step-")
}

// PrepareOutputDir checks the output directory against the mode and returns the run it will
// hold: a new one, or with OutputResume the one it holds. The directory must be locked.
func PrepareOutputDir(dir string, mode OutputMode, log *slog.Logger) (RunInfo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return RunInfo{}, err
	}
	var found []string
	for _, e := range ents {
		if runArtifact(e.Name()) {
			found = append(found, e.Name())
		}
	}
	prev, err := readRunInfo(dir)
	if err != nil {
		return RunInfo{}, err
	}
	switch {
	case mode == OutputResume && prev != nil:
		return *prev, nil
	case mode == OutputResume && len(found) > 0:
		// Written before runs had ids: its checkpoints carry none and are accepted as this run's.
		log.Info("output directory has no run.json (written by an older version); adopting its checkpoints", "dir", dir)
	case mode == OutputFresh && len(found) > 0:
		return RunInfo{}, fmt.Errorf("train.output_dir %s holds an earlier run (%s): continue it with --resume, delete it with --overwrite, or choose another output_dir",
			dir, describeRun(dir, prev, found))
	case mode == OutputOverwrite && len(found) > 0:
		log.Warn("--overwrite: deleting the earlier run", "dir", dir, "run", describeRun(dir, prev, found))
		for _, name := range found {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return RunInfo{}, fmt.Errorf("--overwrite: %w", err)
			}
		}
	}
	info := RunInfo{ID: newRunID(), Started: time.Now().UTC().Format(time.RFC3339)}
	js, err := json.MarshalIndent(info, "", " ")
	if err != nil {
		return RunInfo{}, err
	}
	if err := writeFileDurable(filepath.Join(dir, runFile), js); err != nil {
		return RunInfo{}, err
	}
	return info, nil
}

func readRunInfo(dir string) (*RunInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, runFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var info RunInfo
	if err := json.Unmarshal(b, &info); err != nil || info.ID == "" {
		return nil, fmt.Errorf("%s is not a run.json this program wrote (%v): delete the directory's run with --overwrite or choose another output_dir", filepath.Join(dir, runFile), err)
	}
	return &info, nil
}

// describeRun is a short description of what an earlier run left, for the refusal message.
func describeRun(dir string, info *RunInfo, found []string) string {
	var parts []string
	if info != nil {
		parts = append(parts, "run "+info.ID+" started "+info.Started)
	}
	if list := checkpoints(dir); len(list) > 0 {
		parts = append(parts, fmt.Sprintf("%d checkpoints, newest %s", len(list), filepath.Base(list[len(list)-1])))
	}
	if len(parts) == 0 {
		parts = append(parts, strings.Join(found, ", "))
	}
	return strings.Join(parts, "; ")
}

func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}
