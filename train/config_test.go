package train_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/train"
)

// Bad values stop the run with one line naming the key, the value and what is allowed, instead
// of running with a default (issue 11: each of these used to train with exit 0).
func TestConfigRejectsBadValues(t *testing.T) {
	tiny := filepath.Join(repoRoot(t), "configs/tiny.yaml")
	for set, want := range map[string]string{
		"train.max_steps=-5":            "train.max_steps = -5: must be ≥ 0",
		"lora.r=-3":                     "lora.r = -3: must be ≥ 0",
		"data.labels=foo":               `data.labels = "foo": allowed: answers, all`,
		"data.overflow=bar":             `data.overflow = "bar": allowed: skip, drop_turns`,
		"train.lr=":                     "--set train.lr=: empty value; train.lr needs a number",
		"lora.init=xavier":              `lora.init = "xavier": allowed: gaussian, kaiming`,
		"model.dtype=float16":           `model.dtype = "float16": allowed: float32, bfloat16`,
		"train.lr_scheduler=up":         `train.lr_scheduler = "up": allowed: linear, cosine, constant, constant_with_warmup`,
		"lora.rank_pattern={v_proj: 0}": "lora.rank_pattern = map[v_proj:0]: every value must be > 0",
		"train=3":                       "--set train=3: train is a section",
		"learning_rat=1":                `unknown key "learning_rat"; did you mean "train.lr"?`,
		"train.learning_rate=1":         `unknown key "train.learning_rate"; did you mean "train.lr"?`,
		"train.devices=two":             `train.devices = "two": must be a whole number ≥ 1 or "all"`,
		"train.devices=0":               `train.devices = "0": must be a whole number ≥ 1 or "all"`,
		"train.devices=3":               "train.batch_size = 4 does not split over train.devices = 3",
	} {
		_, err := train.LoadConfig(tiny, []string{set})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: got %v, want an error containing %q", set, err, want)
		}
	}
	if _, err := train.LoadConfig(tiny, []string{"lora.init=kaiming", "lora.r=0", "train.max_steps=0", "train.epochs=1", "train.devices=all", "train.shard_optimizer=true"}); err != nil {
		t.Errorf("valid values rejected: %v", err)
	}
}
