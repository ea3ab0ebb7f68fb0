package main

import (
	"bytes"
	"github.com/idefics2/idefics2/internal/fixtures"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := fixtures.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// A run killed with SIGKILL after a checkpoint and resumed with --resume produces the same
// loss curve, bit for bit, as a run that was never interrupted: trainable weights, AdamW
// moments, the dropout RNG and the data cursor all come back.
func TestKillAndResumeIsExact(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "idefics2-train")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const steps, saveEvery = 8, 4
	args := func(out string) []string {
		ds := filepath.Join(root, "testdata/datasets/the_cauldron")
		return []string{"--config", filepath.Join(root, "configs/tiny.yaml"),
			"--set", "model.path=" + filepath.Join(tmp, "model"),
			"--set", "model.tokenizer=" + filepath.Join(root, "testdata/tokenizer/idefics2"),
			"--set", "data.train=[{kind: cauldron, path: " + ds + ", subsets: [tiny_shapes]}]",
			"--set", "data.eval=[]", "--set", "train.eval_every=0",
			"--set", "train.max_steps=8", "--set", "train.save_every=4", "--set", "train.batch_size=2",
			"--set", "train.grad_accum=2", "--set", "train.progress_bar=false",
			"--set", "train.output_dir=" + out}
	}
	run := func(extra ...string) {
		cmd := exec.Command(bin, append(args(extra[0]), extra[1:]...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
	}
	whole := filepath.Join(tmp, "whole")
	run(whole)

	killed := filepath.Join(tmp, "killed")
	cmd := exec.Command(bin, args(killed)...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(killed, "checkpoint-0000004", "trainer_state.json")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if _, err := os.Stat(ckpt); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no checkpoint after 5 minutes\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(killed, "checkpoint-0000008")); err == nil {
		t.Skip("the run finished before it could be killed; nothing was resumed") // only on a very fast machine
	}
	run(killed, "--resume")

	a, b := readFile(t, filepath.Join(whole, "metrics.jsonl")), readFile(t, filepath.Join(killed, "metrics.jsonl"))
	la, lb := lossFields(a), lossFields(b)
	if len(la) != steps || len(lb) != steps {
		t.Fatalf("metrics have %d and %d steps, want %d", len(la), len(lb), steps)
	}
	for i := range la {
		if la[i] != lb[i] {
			t.Errorf("step %d: uninterrupted %s, resumed %s", i+1, la[i], lb[i])
		}
	}
	t.Logf("losses (uninterrupted = resumed): %s", strings.Join(la, " "))
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lossFields extracts the exact text of each line's "loss" value (and grad norm), so equality
// is bit for bit.
func lossFields(s string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		i := strings.Index(line, `"loss":`)
		j := strings.Index(line, `,"tokens_per_sec"`)
		if i < 0 || j < 0 {
			continue
		}
		out = append(out, line[i:j])
	}
	return out
}
