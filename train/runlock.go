package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is held (flock, exclusive) by the one run writing an output directory. Two runs in
// one directory would interleave metrics.jsonl lines and replace each other's checkpoints and
// adapter, so the second must fail at once. flock is released by the kernel when its holder
// dies, so a crashed run never blocks the next one; the PID written inside only serves to name
// the holder, and a PID left by a dead process is how a crash is recognised and reported.
const lockFile = ".lock"

// RunLock is an exclusive lock on an output directory.
type RunLock struct {
	f    *os.File
	path string
	// Stale is the PID of a run that died holding the directory ("" when the previous run
	// released it, or there was none).
	Stale string
}

// LockOutputDir takes the output directory for this process, or fails naming the process that
// holds it.
func LockOutputDir(dir string) (*RunLock, error) {
	path := filepath.Join(dir, lockFile)
	for attempt := 0; attempt < 8; attempt++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("train.output_dir %s: cannot create its lock file: %w", dir, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			holder := readPID(f)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("train.output_dir %s is in use by another run (pid %s): wait for it to finish, stop it, or choose another output_dir", dir, nameOr(holder, "unknown"))
			}
			return nil, fmt.Errorf("train.output_dir %s: cannot lock %s: %w", dir, path, err)
		}
		// The holder before us may have removed the file between our open and our flock (it
		// removes it on release); a lock on an unlinked file protects nothing, so start again.
		if !sameFile(f, path) {
			f.Close()
			continue
		}
		l := &RunLock{f: f, path: path}
		if pid := readPID(f); pid != "" && pid != strconv.Itoa(os.Getpid()) {
			l.Stale = pid
		}
		if err := f.Truncate(0); err != nil {
			l.Release()
			return nil, err
		}
		if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
			l.Release()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("train.output_dir %s: its lock file keeps being replaced; is another run starting and stopping there?", dir)
}

// Release removes the lock file and unlocks; a finished run leaves no lock behind, so a lock
// file with a PID in it always means a run that did not finish.
func (l *RunLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_ = os.Remove(l.path)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

func readPID(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	return strings.TrimSpace(string(b[:n]))
}

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

func nameOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
