package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// runDir is an output directory held by this run: locked, and naming the run it holds.
type runDir struct {
	lock *RunLock
	RunInfo
}

// openRunDir locks dir and checks it against resume/overwrite (see PrepareOutputDir).
func openRunDir(dir string, resume, overwrite bool, log *slog.Logger) (*runDir, error) {
	if resume && overwrite {
		return nil, errors.New("--resume and --overwrite contradict each other: --resume continues the run in train.output_dir, --overwrite deletes it")
	}
	lock, err := LockOutputDir(dir)
	if err != nil {
		return nil, err
	}
	if lock.Stale != "" {
		log.Warn("a previous run stopped without releasing the output directory (stale lock); taking it over", "dir", dir, "pid", lock.Stale)
	}
	mode := OutputFresh
	switch {
	case resume:
		mode = OutputResume
	case overwrite:
		mode = OutputOverwrite
	}
	info, err := PrepareOutputDir(dir, mode, log)
	if err != nil {
		lock.Release()
		return nil, err
	}
	return &runDir{lock: lock, RunInfo: info}, nil
}

// Close releases the directory.
func (r *runDir) Close() { r.lock.Release() }

// resumeCheckpoint loads the newest checkpoint of run runID that loads. A checkpoint that does
// not load (truncated tensors, a half-written state) is named in a warning and the one before it
// is tried; a checkpoint of another run is never used; a checkpoint past the run's total steps
// is an error, since continuing from it would report a run that never happened under this config.
// With no checkpoint at all the run starts fresh.
func resumeCheckpoint(st *Stepper, dir, runID string, total int, log *slog.Logger) (State, error) {
	list := checkpoints(dir)
	var broken []string
	for i := len(list) - 1; i >= 0; i-- {
		ck := list[i]
		peek, err := readState(ck)
		if err != nil {
			log.Warn("checkpoint is unreadable; trying the one before it", "checkpoint", ck, "err", err)
			broken = append(broken, filepath.Base(ck))
			continue
		}
		if peek.RunID != "" && peek.RunID != runID {
			log.Warn("checkpoint belongs to another run; ignored", "checkpoint", ck, "its_run", peek.RunID, "this_run", runID)
			continue
		}
		if peek.Step > total {
			return State{}, fmt.Errorf("--resume: %s is at step %d, beyond this run's %d steps (train.max_steps or epochs): raise them to continue it, or start again with --overwrite", ck, peek.Step, total)
		}
		state, err := st.LoadCheckpoint(ck)
		if err != nil {
			log.Warn("checkpoint is unreadable; trying the one before it", "checkpoint", ck, "err", err)
			broken = append(broken, filepath.Base(ck))
			continue
		}
		if len(broken) > 0 {
			log.Warn("resumed from an older checkpoint because newer ones are broken", "checkpoint", ck, "broken", strings.Join(broken, ","))
		}
		log.Info("resumed", "checkpoint", ck, "step", state.Step)
		state.RunID = runID
		return state, nil
	}
	if len(broken) > 0 {
		return State{}, fmt.Errorf("--resume: no checkpoint in %s loads (%s are broken): start again with --overwrite", dir, strings.Join(broken, ", "))
	}
	log.Info("no checkpoint to resume from; starting fresh", "dir", dir)
	return State{RunID: runID}, nil
}

func readState(ck string) (State, error) {
	var st State
	js, err := os.ReadFile(filepath.Join(ck, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(ck, stateFile), err)
	}
	return st, nil
}
