package config

import (
	"strings"
	"testing"
)

type testCfg struct {
	Model struct {
		Path  string `mapstructure:"path"`
		DType string `mapstructure:"dtype" check:"oneof=float32|bfloat16"`
	} `mapstructure:"model"`
	Train struct {
		LR        float64        `mapstructure:"lr" check:"gt=0"`
		MaxSteps  int            `mapstructure:"max_steps" check:"min=0"`
		KeepLast  int            `mapstructure:"keep_last"`
		Buckets   []int          `mapstructure:"buckets" check:"gt=0"`
		Pattern   map[string]int `mapstructure:"pattern" check:"gt=0"`
		Splitting string         `mapstructure:"splitting" check:"oneof=|on|off"`
		Progress  bool           `mapstructure:"progress"`
	} `mapstructure:"train"`
}

func defaults() testCfg {
	var c testCfg
	c.Model.DType, c.Train.LR, c.Train.Buckets = "float32", 1e-4, []int{8, 16}
	return c
}

func TestNearestKey(t *testing.T) {
	ks := newKeySet(typeOf[testCfg]())
	for typed, want := range map[string]string{
		"learning_rat":        "train.lr",
		"train.learning_rate": "train.lr",
		"learning_rate":       "train.lr",
		"train.max_step":      "train.max_steps",
		"max_stpes":           "train.max_steps",
		"model.dtyp":          "model.dtype",
		"torch_dtype":         "model.dtype",
		"trian.keep_last":     "train.keep_last",
		"save_total_limit":    "train.keep_last",
	} {
		if got := ks.nearest(typed); got != want {
			t.Errorf("nearest(%q) = %q, want %q", typed, got, want)
		}
	}
}

func TestLoadLayers(t *testing.T) {
	t.Setenv("IDEFICS2_TRAIN_MAX_STEPS", "7")
	c := defaults()
	if err := Load(&c, "", []string{"train.lr=5e-5", "train.buckets=[4]", "train.pattern={v_proj: 3}", "model.path=1e-4"}); err != nil {
		t.Fatal(err)
	}
	if c.Train.LR != 5e-5 || c.Train.MaxSteps != 7 || len(c.Train.Buckets) != 1 || c.Train.Pattern["v_proj"] != 3 || c.Model.Path != "1e-4" {
		t.Fatalf("got %+v", c)
	}
}

func TestLoadRejects(t *testing.T) {
	for set, want := range map[string]string{
		"train.max_steps=-5":    `train.max_steps = -5: must be ≥ 0`,
		"train.lr=":             `--set train.lr=: empty value; train.lr needs a number`,
		"train.lr=0":            `train.lr = 0: must be > 0`,
		"train.lr=.nan":         `train.lr = NaN: must be > 0`,
		"model.dtype=float16":   `model.dtype = "float16": allowed: float32, bfloat16`,
		"train.splitting=maybe": `train.splitting = "maybe": allowed: "" (unset), on, off`,
		"train.buckets=[4, -1]": `train.buckets = [4 -1]: every value must be > 0`,
		"train.pattern={a: 0}":  `train.pattern = map[a:0]: every value must be > 0`,
		"train=3":               `--set train=3: train is a section; set its keys one by one`,
		"learning_rat=1":        `--set: unknown key "learning_rat"; did you mean "train.lr"?`,
		"train.progress=":       `train.progress needs true or false`,
		"train.max_steps=lots":  `--set train.max_steps=lots: train.max_steps needs an integer`,
		"train.lr=1e-4x":        `--set train.lr=1e-4x: train.lr needs a number`,
		"nokey":                 `--set "nokey": want key=value`,
	} {
		c := defaults()
		err := Load(&c, "", []string{set})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: got error %v, want one containing %q", set, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("--set %s: error is not one line: %q", set, err)
		}
	}
}

func TestUnknownKeyInFile(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	writeFile(t, path, "train:\n  learning_rate: 1e-3\n")
	c := defaults()
	err := Load(&c, path, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown key "train.learning_rate"; did you mean "train.lr"?`) {
		t.Fatalf("got %v", err)
	}
	writeFile(t, path, "train: 3\n")
	if err := Load(&c, path, nil); err == nil {
		t.Fatal("a section replaced by a number was accepted")
	}
}

func TestFlags(t *testing.T) {
	c := defaults()
	f := NewFlags("cmd", "usage: cmd", &c)
	f.Bind("model", "model.path", "model directory")
	f.Bind("bucket", "train.buckets", "bucket")
	f.Bind("progress", "train.progress", "progress")
	if err := f.Parse([]string{"--model", "m", "--bucket", "3", "--bucket", "5", "--progress", "--set", "train.lr=2"}, &c); err != nil {
		t.Fatal(err)
	}
	if c.Model.Path != "m" || len(c.Train.Buckets) != 2 || c.Train.Buckets[1] != 5 || !c.Train.Progress || c.Train.LR != 2 {
		t.Fatalf("got %+v", c)
	}
	c = defaults()
	f = NewFlags("cmd", "usage: cmd", &c)
	if err := f.Parse([]string{"--set", "train.pattern={v_proj:", "3}"}, &c); err == nil || !strings.Contains(err.Error(), `unexpected argument "3}"`) {
		t.Fatalf("a stray argument: %v", err)
	}
	c = defaults()
	f = NewFlags("cmd", "usage: cmd", &c)
	f.Bind("lr", "train.lr", "lr")
	if err := f.Parse([]string{"--lr", "-1"}, &c); err == nil || !strings.Contains(err.Error(), "train.lr = -1: must be > 0") {
		t.Fatalf("got %v", err)
	}
}
