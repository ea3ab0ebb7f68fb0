package train

import (
	"os"
	"path/filepath"
	"testing"
)

// Issue 11, item 6: the final save removed the old checkpoint of the same step before renaming
// the new one in place. installDir keeps one complete copy at every moment, and a stop between
// its two renames leaves checkpoint-N.old, which is listed in place of the missing checkpoint-N.
func TestInstallDirKeepsACompleteCopy(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "checkpoint-0000004")
	write := func(d, content string) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{stateFile, tensorsFile} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(final, "old")
	write(final+".tmp", "new")
	if err := installDir(final+".tmp", final); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(final, stateFile)); string(b) != "new" {
		t.Errorf("checkpoint holds %q after the swap", b)
	}
	for _, leftover := range []string{final + ".tmp", final + oldSuffix} {
		if _, err := os.Stat(leftover); err == nil {
			t.Errorf("%s left behind", leftover)
		}
	}

	// Stopped between "final → final.old" and "tmp → final".
	if err := os.Rename(final, final+oldSuffix); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "checkpoint-0000002"), "older")
	list := checkpoints(dir)
	if len(list) != 2 || filepath.Base(list[1]) != "checkpoint-0000004"+oldSuffix {
		t.Fatalf("checkpoints = %v, want checkpoint-0000004.old listed as the newest", list)
	}
}

// A second lock on a locked directory fails naming the holder; a released one is free again.
func TestLockOutputDir(t *testing.T) {
	dir := t.TempDir()
	a, err := LockOutputDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockOutputDir(dir); err == nil {
		t.Fatal("locked twice")
	} else {
		t.Log(err)
	}
	a.Release()
	b, err := LockOutputDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if b.Stale != "" {
		t.Errorf("a released lock was reported stale (pid %s)", b.Stale)
	}
	b.Release()
}
