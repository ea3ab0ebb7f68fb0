package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/idefics2/idefics2/data"
	"github.com/idefics2/idefics2/eval"
)

// reference is what idefics2-generate answers (before it trims spaces): one user turn, images
// first, greedy, through eval's predictor on the same model.
func reference(t *testing.T, ms *Models, name, question string, maxNew int, images ...[]byte) string {
	t.Helper()
	m, err := ms.lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	msg := data.Message{Role: "user"}
	for range images {
		msg.Content = append(msg.Content, data.ImageItem())
	}
	msg.Content = append(msg.Content, data.Text(question))
	prompt, err := data.RenderChat([]data.Message{msg}, true)
	if err != nil {
		t.Fatal(err)
	}
	pred := eval.NewModelPredictor(m.Generator, ms.Session.Tokenizer, ms.Session.Images, ms.Generation)
	outs, err := pred.Predict(context.Background(), []eval.Request{{Prompt: prompt, Images: images, MaxNewTokens: maxNew}})
	if err != nil || outs[0].Err != nil {
		t.Fatal(err, outs[0].Err)
	}
	return outs[0].Text
}

func decodeDataURL(t *testing.T, u string) []byte {
	b, err := base64.StdEncoding.DecodeString(u[strings.Index(u, ",")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A chat completion with a base64 image answers what idefics2-generate answers, for the base
// and for an adapter chosen by `model`, in OpenAI's response shape with usage.
func TestChatCompletion(t *testing.T) {
	_, hs := testServer(t, nil)
	img := pngDataURL(t, 40, 24, 1)
	for _, name := range []string{"tiny", "tuned"} {
		code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat(name, "What is in the image?", 6, img))
		if code != http.StatusOK {
			t.Fatalf("%s: status %d: %v", name, code, out)
		}
		got := answerOf(t, out)
		want := reference(t, tinyModels(t), name, "What is in the image?", 6, decodeDataURL(t, img))
		if got != want {
			t.Errorf("%s: answer %q, idefics2-generate's %q", name, got, want)
		}
		if out["object"] != "chat.completion" || out["model"] != name || !strings.HasPrefix(out["id"].(string), "chatcmpl-") {
			t.Errorf("%s: response %v", name, out)
		}
		u := out["usage"].(map[string]any)
		if u["completion_tokens"].(float64) < 1 || u["prompt_tokens"].(float64) < 10 ||
			u["total_tokens"].(float64) != u["completion_tokens"].(float64)+u["prompt_tokens"].(float64) {
			t.Errorf("%s: usage %v", name, u)
		}
		fr := out["choices"].([]any)[0].(map[string]any)["finish_reason"]
		if fr != "length" && fr != "stop" {
			t.Errorf("%s: finish_reason %v", name, fr)
		}
		t.Logf("%s: %q (%v)", name, got, u)
	}
	if a, b := reference(t, tinyModels(t), "tiny", "Describe it.", 8), reference(t, tinyModels(t), "tuned", "Describe it.", 8); a == b {
		t.Errorf("the adapter answers as the base does (%q): it is not applied", a)
	}
}

// readSSE reads `data: ...` events until [DONE], which must come last.
func readSSE(t *testing.T, resp *http.Response) []map[string]any {
	t.Helper()
	var events []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	done := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if done {
			t.Fatalf("event after [DONE]: %q", line)
		}
		payload, ok := strings.CutPrefix(line, "data:")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		payload = strings.TrimSpace(payload)
		if payload == "[DONE]" {
			done = true
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(payload), &ev); err != nil {
			t.Fatalf("event %q: %v", payload, err)
		}
		events = append(events, ev)
	}
	if !done && resp.Header.Get("Content-Type") == "text/event-stream" && strings.Contains(resp.Request.URL.Path, "chat") {
		t.Fatal("the stream did not end with data: [DONE]")
	}
	return events
}

// Streaming sends OpenAI's chunks: the role first, content deltas that add up to the
// non-streamed answer, a chunk with finish_reason, the usage chunk when asked, then [DONE].
func TestChatStream(t *testing.T) {
	_, hs := testServer(t, nil)
	req := chat("tiny", "Read the sign.", 7, pngDataURL(t, 32, 32, 2))
	_, plain, _ := post(t, hs.URL+"/v1/chat/completions", req)
	want := answerOf(t, plain)

	req["stream"] = true
	req["stream_options"] = map[string]any{"include_usage": true}
	body, _ := json.Marshal(req)
	resp, err := http.Post(hs.URL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readSSE(t, resp)
	var text strings.Builder
	var finish any
	var usage map[string]any
	for i, ev := range events {
		if ev["object"] != "chat.completion.chunk" {
			t.Fatalf("event %d: %v", i, ev)
		}
		choices := ev["choices"].([]any)
		if len(choices) == 0 {
			usage = ev["usage"].(map[string]any)
			continue
		}
		c := choices[0].(map[string]any)
		delta := c["delta"].(map[string]any)
		if i == 0 && delta["role"] != "assistant" {
			t.Errorf("first chunk has no role: %v", ev)
		}
		if s, ok := delta["content"].(string); ok {
			text.WriteString(s)
		}
		if c["finish_reason"] != nil {
			finish = c["finish_reason"]
		}
	}
	if text.String() != want {
		t.Errorf("streamed %q, not streamed %q", text.String(), want)
	}
	if finish == nil || usage == nil || usage["completion_tokens"] != plain["usage"].(map[string]any)["completion_tokens"] {
		t.Errorf("finish %v, usage %v (not streamed: %v)", finish, usage, plain["usage"])
	}
}

// A stop sequence ends the answer before it (OpenAI drops the sequence), streamed or not.
func TestChatStop(t *testing.T) {
	_, hs := testServer(t, nil)
	req := chat("tiny", "Say something.", 10)
	_, out, _ := post(t, hs.URL+"/v1/chat/completions", req)
	full := answerOf(t, out)
	words := strings.Fields(full)
	if len(words) < 2 {
		t.Fatalf("the tiny model's answer %q has fewer than 2 words: nothing to stop at", full)
	}
	stop := words[1]
	req["stop"] = []string{stop, "never-appears"}
	_, out, _ = post(t, hs.URL+"/v1/chat/completions", req)
	got := answerOf(t, out)
	if want := full[:strings.Index(full, stop)]; got != want {
		t.Errorf("with stop %q: %q, want %q", stop, got, want)
	}
	if fr := out["choices"].([]any)[0].(map[string]any)["finish_reason"]; fr != "stop" {
		t.Errorf("finish_reason %v", fr)
	}
}
