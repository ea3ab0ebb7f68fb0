package eval

import "testing"

func TestPresetPrompts(t *testing.T) {
	cases := []struct {
		preset string
		task   Task
		q      string
		n      int
		want   string
	}{
		{"lmms-eval", DocVQA, "What is the date?", 1,
			"User:<image>What is the date?\nAnswer the question using a single word or phrase.<end_of_utterance>\nAssistant:"},
		{"lmms-eval", TextVQA, "what brand is SHOWN here?", 1,
			"User:<image>What brand is shown here?\nAnswer the question using a single word or phrase.<end_of_utterance>\nAssistant:"},
		{"lmms-eval", DocVQA, "two pages?", 2,
			"User:<image><image>two pages?\nAnswer the question using a single word or phrase.<end_of_utterance>\nAssistant:"},
		{"lmms-eval", DocVQA, "no image", 0,
			"User: no image\nAnswer the question using a single word or phrase.<end_of_utterance>\nAssistant:"},
		{"vlmevalkit", DocVQA, "  What is the date? ", 1,
			"User:<image>What is the date? \nAnswer the question using a single word or phrase.\nGive a very brief answer.<end_of_utterance>\nAssistant:"},
		{"vlmevalkit", TextVQA, "what brand is SHOWN here?", 1,
			"User:<image>what brand is SHOWN here?\nAnswer the question using a single word or phrase.\nGive a very brief answer.<end_of_utterance>\nAssistant:"},
	}
	for _, c := range cases {
		p, err := NewPreset(c.preset, c.task)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Prompt(c.q, c.n); got != c.want {
			t.Errorf("%s %s %q:\n got %q\nwant %q", c.preset, c.task, c.q, got, c.want)
		}
	}
}

func TestPresetSettings(t *testing.T) {
	check := func(preset string, task Task, maxNew int, splitting string, answerIn, answerOut string) {
		t.Helper()
		p, err := NewPreset(preset, task)
		if err != nil {
			t.Fatal(err)
		}
		s := "processor default"
		if p.Splitting != nil {
			s = map[bool]string{true: "on", false: "off"}[*p.Splitting]
		}
		if p.MaxNewTokens != maxNew || s != splitting {
			t.Errorf("%s %s: max_new_tokens %d, splitting %s; want %d, %s", preset, task, p.MaxNewTokens, s, maxNew, splitting)
		}
		if got := p.Answer(answerIn); got != answerOut {
			t.Errorf("%s: answer %q → %q, want %q", preset, answerIn, got, answerOut)
		}
	}
	check("lmms-eval", DocVQA, 32, "off", " 42.\n", " 42.\n")
	check("lmms-eval", TextVQA, 1024, "off", " 42.", " 42.")
	check("vlmevalkit", DocVQA, 1024, "processor default", " 42.\n", "42.")
	check("vlmevalkit", TextVQA, 1024, "processor default", "\t42 ", "42")
	if _, err := NewPreset("other", DocVQA); err == nil {
		t.Error("unknown preset accepted")
	}
	c := Config{Task: "DocVQA", Preset: "vlmevalkit", MaxNewTokens: 16, Splitting: "off"}
	p, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxNewTokens != 16 || p.Splitting == nil || *p.Splitting || c.Split != "validation" || c.BatchSize != 1 {
		t.Errorf("overrides not applied: %+v %+v", p, c)
	}
}
