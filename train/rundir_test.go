package train_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/train"
)

// logBuffer is a logger whose text output the test reads, safe for concurrent runs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// shortRun is the tiny config cut to a few steps, without evaluation.
func shortRun(t *testing.T, tmp string, sets ...string) train.Config {
	return tinyConfig(t, tmp, append([]string{"data.eval=[]", "train.eval_every=0", "train.warmup_steps=1"}, sets...)...)
}

func metricsLines(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		var m train.Metrics
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("metrics.jsonl has an unreadable line %q: %v", l, err)
		}
	}
	return lines
}

func checkpointNames(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*"))
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// Issue 11, item 1: a fresh run into a directory holding an earlier run truncated its metrics,
// replaced its adapter and mixed checkpoints; --resume took the other run's checkpoint past
// max_steps. Now: the fresh run refuses and touches nothing, --resume refuses a checkpoint past
// the run's steps, --overwrite starts clean, and a checkpoint of another run is never resumed.
func TestFreshRunRefusesEarlierRun(t *testing.T) {
	tmp := t.TempDir()
	ctx := context.Background()
	var logs logBuffer
	first := shortRun(t, tmp, "train.max_steps=4", "train.save_every=2", "train.keep_last=2")
	if _, err := train.Run(ctx, first, false, logs.logger()); err != nil {
		t.Fatal(err)
	}
	out := first.Train.OutputDir
	before := metricsLines(t, out)

	second := shortRun(t, tmp, "train.max_steps=3", "train.save_every=2", "train.keep_last=2")
	_, err := train.Run(ctx, second, false, logs.logger())
	if err == nil || !strings.Contains(err.Error(), "holds an earlier run") || !strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("fresh run into a used directory: err = %v", err)
	}
	t.Log(err)
	if after := metricsLines(t, out); len(after) != len(before) {
		t.Errorf("the refused run changed metrics.jsonl: %d lines, was %d", len(after), len(before))
	}

	_, err = train.Run(ctx, second, true, logs.logger())
	if err == nil || !strings.Contains(err.Error(), "beyond") {
		t.Fatalf("--resume from step 4 with max_steps=3: err = %v", err)
	}
	t.Log(err)

	over := shortRun(t, tmp, "train.max_steps=3", "train.save_every=2", "train.keep_last=2", "train.overwrite_output_dir=true")
	res, err := train.Run(ctx, over, false, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(metricsLines(t, out)); n != 3 || res.Steps != 3 {
		t.Errorf("--overwrite run: %d metrics lines, %d steps, want 3", n, res.Steps)
	}
	if got := strings.Join(checkpointNames(t, out), " "); got != "checkpoint-0000002 checkpoint-0000003" {
		t.Errorf("checkpoints after --overwrite: %s", got)
	}

	// A checkpoint of another run dropped into the directory is not resumed, even when newest.
	foreign := filepath.Join(out, "checkpoint-0000009")
	copyTree(t, filepath.Join(out, "checkpoint-0000003"), foreign)
	st := filepath.Join(foreign, "trainer_state.json")
	var state map[string]any
	b, _ := os.ReadFile(st)
	if err := json.Unmarshal(b, &state); err != nil {
		t.Fatal(err)
	}
	state["run_id"], state["step"] = "another-run", 9
	b, _ = json.Marshal(state)
	os.WriteFile(st, b, 0o644)
	more := shortRun(t, tmp, "train.max_steps=4", "train.save_every=2", "train.keep_last=0")
	res, err = train.Run(ctx, more, true, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 4 || len(metricsLines(t, out)) != 4 {
		t.Errorf("resumed run ended at step %d with %d metrics lines, want 4 (from checkpoint-0000003)", res.Steps, len(metricsLines(t, out)))
	}
	if !strings.Contains(logs.String(), "belongs to another run") {
		t.Errorf("no warning about the foreign checkpoint:\n%s", logs.String())
	}
}

// Issue 11, item 2: two runs in one directory both exited 0 and interleaved metrics.jsonl. Now
// the second fails at once naming the first's PID, and the first finishes untouched; a lock
// left by a dead process is reported and taken over.
func TestSecondRunInSameDirectoryFails(t *testing.T) {
	tmp := t.TempDir()
	ctx := context.Background()
	var logs logBuffer
	cfg := shortRun(t, tmp, "train.max_steps=6", "train.save_every=0")
	out := cfg.Train.OutputDir
	done := make(chan error, 1)
	go func() {
		_, err := train.Run(ctx, cfg, false, logs.logger())
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(out, "metrics.jsonl")); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the first run ended before the second started: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the first run did not start within 5 minutes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	second := shortRun(t, tmp, "train.max_steps=6", "train.save_every=0")
	start := time.Now()
	_, err := train.Run(ctx, second, false, logs.logger())
	if err == nil || !strings.Contains(err.Error(), "in use by another run") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second run: err = %v, want it refused naming pid %d", err, os.Getpid())
	}
	t.Logf("second run refused in %s: %v", time.Since(start).Round(time.Millisecond), err)
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	if n := len(metricsLines(t, out)); n != 6 {
		t.Errorf("metrics.jsonl has %d lines, want 6", n)
	}

	// A lock file left by a process that died: reported, then taken over.
	stale := shortRun(t, tmp, "train.max_steps=1", "train.output_dir="+filepath.Join(tmp, "stale"))
	os.MkdirAll(stale.Train.OutputDir, 0o755)
	os.WriteFile(filepath.Join(stale.Train.OutputDir, ".lock"), []byte("999999999\n"), 0o644)
	if _, err := train.Run(ctx, stale, false, logs.logger()); err != nil {
		t.Fatalf("run over a stale lock: %v", err)
	}
	if !strings.Contains(logs.String(), "stale lock") || !strings.Contains(logs.String(), "999999999") {
		t.Errorf("stale lock not reported:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(stale.Train.OutputDir, ".lock")); err == nil {
		t.Error("a finished run left its lock file")
	}
}

// Issue 11, item 6: a truncated newest checkpoint stopped --resume. Now it is named in a warning
// and the run resumes from the checkpoint before it, with the same losses as the first time.
func TestResumeFallsBackToValidCheckpoint(t *testing.T) {
	tmp := t.TempDir()
	ctx := context.Background()
	var logs logBuffer
	cfg := shortRun(t, tmp, "train.max_steps=4", "train.save_every=2", "train.keep_last=0")
	if _, err := train.Run(ctx, cfg, false, logs.logger()); err != nil {
		t.Fatal(err)
	}
	out := cfg.Train.OutputDir
	want := metricsLines(t, out)
	tensors := filepath.Join(out, "checkpoint-0000004", "trainer_state.safetensors")
	info, err := os.Stat(tensors)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(tensors, info.Size()/2); err != nil {
		t.Fatal(err)
	}
	res, err := train.Run(ctx, cfg, true, logs.logger())
	if err != nil {
		t.Fatalf("--resume with a truncated newest checkpoint: %v", err)
	}
	if !strings.Contains(logs.String(), "checkpoint-0000004") || !strings.Contains(logs.String(), "unreadable") {
		t.Errorf("the broken checkpoint is not named:\n%s", logs.String())
	}
	got := metricsLines(t, out)
	if res.Steps != 4 || len(got) != 4 {
		t.Fatalf("resumed run: %d steps, %d metrics lines", res.Steps, len(got))
	}
	for i := 2; i < 4; i++ {
		if loss(got[i]) != loss(want[i]) {
			t.Errorf("step %d: loss %s after resuming from checkpoint-0000002, %s the first time", i+1, loss(got[i]), loss(want[i]))
		}
	}
}

// Issue 11, item 5: a NaN loss ended the run with only "json: unsupported value: NaN". Now the
// run stops at the first non-finite step with one line naming it, the last good checkpoint
// and what to try, writes nothing for that step, and the checkpoint it names is finite.
func TestNonFiniteLossStopsRun(t *testing.T) {
	tmp := t.TempDir()
	cfg := shortRun(t, tmp, "train.max_steps=6", "train.save_every=1", "train.keep_last=0", "train.lr=1e30", "train.max_grad_norm=0", "train.warmup_steps=0")
	_, err := train.Run(context.Background(), cfg, false, slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	if err == nil {
		t.Fatal("a run with lr=1e30 finished")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"step ", "diverged", "train.lr", "float32", "checkpoint-"} {
		if !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Errorf("error lacks %q (or is not one line): %s", want, msg)
		}
	}
	out := cfg.Train.OutputDir
	lines := metricsLines(t, out) // every line is valid JSON
	cks := checkpointNames(t, out)
	if len(cks) == 0 || len(cks) != len(lines) {
		t.Fatalf("%d checkpoints and %d metrics lines: want one per finite step", len(cks), len(lines))
	}
	last := cks[len(cks)-1]
	if !strings.Contains(msg, last) {
		t.Errorf("error does not name the last good checkpoint %s", last)
	}
	ck, err := model.OpenSafetensors(filepath.Join(out, last, "trainer_state.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if err := ck.CheckFinite(); err != nil {
		t.Errorf("the last good checkpoint is not finite: %v", err)
	}
}

func loss(line string) string {
	i := strings.Index(line, `"loss":`)
	j := strings.Index(line, `,"lr"`)
	if i < 0 || j < i {
		return line
	}
	return line[i:j]
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
