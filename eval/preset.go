package eval

import (
	"fmt"
	"strings"
)

// Task is an evaluation dataset.
type Task string

const (
	DocVQA  Task = "docvqa"  // lmms-lab/DocVQA (DocVQA config), ANLS
	TextVQA Task = "textvqa" // lmms-lab/textvqa, VQA accuracy
)

// ParseTask accepts the task names, case-insensitively.
func ParseTask(s string) (Task, error) {
	switch strings.ToLower(s) {
	case "docvqa":
		return DocVQA, nil
	case "textvqa":
		return TextVQA, nil
	}
	return "", fmt.Errorf("eval: unknown task %q (docvqa, textvqa)", s)
}

// Preset reproduces how one harness evaluates Idefics2 on a task: prompt, image splitting,
// generation length, how the answer is taken from the generated text, and the metric with its
// normalization and quirks (spec §6.3, peers.md §4).
type Preset struct {
	Name string
	Task Task
	// Prompt is the full model prompt for a question and its number of images, chat template
	// applied, with literal <image> placeholders (the processor expands them).
	Prompt func(question string, images int) string
	// Splitting is the image splitting setting; nil means the processor's own configuration
	// (preprocessor_config.json), which is what a harness that does not set it gets.
	Splitting *bool
	// MaxNewTokens is the harness's generation length.
	MaxNewTokens int
	// Answer turns the decoded new tokens (special tokens skipped) into the prediction scored.
	Answer func(decoded string) string
	// Score scores one prediction against the references, in [0, 1].
	Score func(prediction string, references []string) float64
	// Metric names Score in reports.
	Metric string
	// Percent: the harness reports the dataset score ×100.
	Percent bool
}

// Presets are the names NewPreset accepts.
var Presets = []string{"lmms-eval", "vlmevalkit"}

const (
	lmmsPostPrompt = "\nAnswer the question using a single word or phrase."
	vlmBrief       = "\nGive a very brief answer."
)

// NewPreset returns the preset name ("lmms-eval" or "vlmevalkit") for task.
//
// lmms-eval (--model idefics2; tasks docvqa_val, textvqa_val):
//   - prompt: one user message with an image item per image, then the text
//     question + "\nAnswer the question using a single word or phrase." (TextVQA first applies
//     Python's str.capitalize to the question, which also lower-cases the rest of it), through
//     the chat template with the generation prompt: "User:<image>…<end_of_utterance>\nAssistant:";
//   - the model wrapper builds its processor with do_image_splitting=False;
//   - max_new_tokens 32 for DocVQA (task yaml), 1024 for TextVQA (wrapper default; the task's
//     "until" is dropped by the wrapper, so only eos stops);
//   - the answer is the decoded text as is (not stripped);
//   - DocVQA: ANLS (raw-length denominator); TextVQA: EvalAI normalization.
//
// VLMEvalKit (IDEFICS2 model, DocVQA_VAL, TextVQA_VAL):
//   - the dataset appends "\nAnswer the question using a single word or phrase." to the question,
//     then the model wrapper builds "User:" + "<image>"×n + text.strip() +
//     "\nGive a very brief answer.<end_of_utterance>\nAssistant:" by hand;
//   - the processor keeps its defaults (image splitting on for idefics2-8b);
//   - max_new_tokens 1024; the answer is the decoded text stripped;
//   - predictions go through a spreadsheet and pandas before scoring (PandasRoundTrip);
//   - DocVQA: the same ANLS; TextVQA: VLMEvalKit's process_answer normalization.
func NewPreset(name string, task Task) (*Preset, error) {
	switch task {
	case DocVQA, TextVQA:
	default:
		return nil, fmt.Errorf("eval: unknown task %q (docvqa, textvqa)", task)
	}
	switch strings.ToLower(name) {
	case "lmms-eval", "lmms_eval", "lmmseval":
		no := false
		p := &Preset{Name: "lmms-eval", Task: task, Splitting: &no, Answer: func(s string) string { return s }}
		if task == DocVQA {
			p.MaxNewTokens = 32
			p.Prompt = func(q string, n int) string { return lmmsPrompt(q+lmmsPostPrompt, n) }
			p.Score, p.Metric = ANLS, "anls"
		} else {
			p.MaxNewTokens = 1024
			p.Prompt = func(q string, n int) string { return lmmsPrompt(pyCapitalize(q)+lmmsPostPrompt, n) }
			p.Score = func(pred string, refs []string) float64 { return VQAAccuracy(pred, refs, NormalizeEvalAI) }
			p.Metric = "exact_match (VQA accuracy, EvalAI normalization)"
		}
		return p, nil
	case "vlmevalkit", "vlmeval":
		p := &Preset{Name: "vlmevalkit", Task: task, MaxNewTokens: 1024, Percent: true, Answer: pyStrip}
		p.Prompt = func(q string, n int) string {
			return "User:" + strings.Repeat("<image>", n) + pyStrip(q+lmmsPostPrompt) + vlmBrief + "<end_of_utterance>\nAssistant:"
		}
		if task == DocVQA {
			p.Score = func(pred string, refs []string) float64 { return ANLS(PandasRoundTrip(pred), refs) }
			p.Metric = "anls"
		} else {
			p.Score = func(pred string, refs []string) float64 {
				return VQAAccuracy(PandasRoundTrip(pred), refs, NormalizeVLMEvalKit)
			}
			p.Metric = "vqa_score"
		}
		return p, nil
	}
	return nil, fmt.Errorf("eval: unknown preset %q (%s)", name, strings.Join(Presets, ", "))
}

// lmmsPrompt is the Idefics2 chat template applied to one user message holding n image items and
// then text, with the generation prompt. (lmms-eval adds no image items when the text already
// holds an <image> placeholder.)
func lmmsPrompt(text string, n int) string {
	if strings.Contains(text, "<image>") {
		n = 0
	}
	sep := ": "
	if n > 0 {
		sep = ":" // the template writes "User:" without a space when the first item is an image
	}
	return "User" + sep + strings.Repeat("<image>", n) + text + "<end_of_utterance>\nAssistant:"
}
