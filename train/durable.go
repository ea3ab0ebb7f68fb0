package train

import (
	"os"
	"path/filepath"
)

// A checkpoint is only as good as what reaches the disk before the process or the machine
// stops: rename makes the new directory appear at once, but without fsync of its files and of
// the directories holding them a power loss can leave a checkpoint whose name exists and whose
// files are empty. Every checkpoint file is synced, then its directory, then the parent after
// the rename.

// syncPath fsyncs a file or a directory.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// syncTree fsyncs every file of a directory, then the directory itself.
func syncTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			if err := syncPath(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return syncPath(dir)
}

// writeFileDurable writes a small file through a synced temporary and a rename.
func writeFileDurable(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}

// installDir puts the complete directory tmp at final. When final already exists (the final
// save of a run whose last step was also a periodic save) it is moved aside first and removed
// only once the new one is in place, so at every moment one complete copy exists under final
// or final+".old" (which checkpoints() accepts when final is missing).
func installDir(tmp, final string) error {
	if err := syncTree(tmp); err != nil {
		return err
	}
	parent := filepath.Dir(final)
	old := final + oldSuffix
	_ = os.RemoveAll(old)
	hadOld := false
	if _, err := os.Stat(final); err == nil {
		if err := os.Rename(final, old); err != nil {
			return err
		}
		hadOld = true
	}
	if err := os.Rename(tmp, final); err != nil {
		if hadOld {
			_ = os.Rename(old, final)
		}
		return err
	}
	if err := syncPath(parent); err != nil {
		return err
	}
	if hadOld {
		if err := os.RemoveAll(old); err != nil {
			return err
		}
		return syncPath(parent)
	}
	return nil
}
