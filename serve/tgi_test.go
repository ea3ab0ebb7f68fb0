package serve

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func testServerFiles(t *testing.T, h http.Handler) (*httptest.Server, string) {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s, s.URL
}

// TGI's /generate with the model card's prompt form (markdown image, turns separated by
// <end_of_utterance>\n) answers what the chat API answers for the same conversation; details
// list the tokens; / answers a list, as the text_generation client expects; an adapter is
// chosen by adapter_id.
func TestTGIGenerate(t *testing.T) {
	_, hs := testServer(t, nil)
	img := pngDataURL(t, 36, 20, 3)
	for _, model := range []string{"tiny", "tuned"} {
		_, out, _ := post(t, hs.URL+"/v1/chat/completions", chat(model, "What is it?", 6, img))
		want := answerOf(t, out)
		prompt := "User:![](" + img + ")What is it?<end_of_utterance>\nAssistant:"
		params := map[string]any{"max_new_tokens": 6, "repetition_penalty": 1.0, "do_sample": false, "details": true, "adapter_id": model}
		if model == "tiny" {
			params["adapter_id"] = nil
		}
		code, got, _ := post(t, hs.URL+"/generate", map[string]any{"inputs": prompt, "parameters": params})
		if code != 200 || got["generated_text"] != want {
			t.Fatalf("%s: /generate %d %v; chat answered %q", model, code, got, want)
		}
		d := got["details"].(map[string]any)
		if d["generated_tokens"].(float64) < 1 || len(d["tokens"].([]any)) != int(d["generated_tokens"].(float64)) {
			t.Errorf("details %v", d)
		}
		code, got, _ = post(t, hs.URL+"/", map[string]any{"inputs": prompt, "parameters": params, "stream": false})
		if code != 200 || got["generated_text"] != want {
			t.Errorf("%s: / %d %v", model, code, got)
		}
	}
	code, out, _ := post(t, hs.URL+"/generate", map[string]any{"inputs": "x", "parameters": map[string]any{"best_of": 2}})
	if code != 400 || out["error_type"] != "validation" {
		t.Errorf("best_of: %d %v", code, out)
	}
	code, out, _ = post(t, hs.URL+"/generate", map[string]any{"inputs": "![](data:image/png;base64,AAAA)"})
	if code != 400 || !strings.Contains(out["error"].(string), "decode") {
		t.Errorf("bad image: %d %v", code, out)
	}
}

// /generate_stream sends one event per token; the last carries generated_text and details, and
// the tokens' texts add up to it.
func TestTGIStream(t *testing.T) {
	_, hs := testServer(t, nil)
	prompt := "User: Tell me.<end_of_utterance>\nAssistant:"
	_, plain, _ := post(t, hs.URL+"/generate", map[string]any{"inputs": prompt, "parameters": map[string]any{"max_new_tokens": 8}})
	body, _ := json.Marshal(map[string]any{"inputs": prompt, "parameters": map[string]any{"max_new_tokens": 8}})
	resp, err := http.Post(hs.URL+"/generate_stream", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := readSSE(t, resp)
	var text strings.Builder
	for i, ev := range events {
		tok := ev["token"].(map[string]any)
		if !tok["special"].(bool) {
			text.WriteString(tok["text"].(string))
		}
		last := i == len(events)-1
		if (ev["generated_text"] != nil) != last || (ev["details"] != nil) != last {
			t.Errorf("event %d of %d: %v", i, len(events), ev)
		}
	}
	if len(events) == 0 || events[len(events)-1]["generated_text"] != plain["generated_text"] || text.String() != plain["generated_text"] {
		t.Errorf("stream %q / %v, /generate %q", text.String(), events, plain["generated_text"])
	}
}

// /v1/models lists the base and every adapter; /health and /metrics answer.
func TestModelsHealthMetrics(t *testing.T) {
	_, hs := testServer(t, nil)
	resp, err := http.Get(hs.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Object string
		Data   []struct{ ID, Object string }
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "tiny" || list.Data[1].ID != "tuned" || list.Data[1].Object != "model" {
		t.Errorf("/v1/models: %+v", list)
	}
	if r, _ := http.Get(hs.URL + "/v1/models/tuned"); r.StatusCode != 200 {
		t.Errorf("/v1/models/tuned: %d", r.StatusCode)
	}
	if r, _ := http.Get(hs.URL + "/v1/models/nope"); r.StatusCode != 404 {
		t.Errorf("/v1/models/nope: %d", r.StatusCode)
	}
	if r, _ := http.Get(hs.URL + "/health"); r.StatusCode != 200 {
		t.Errorf("/health: %d", r.StatusCode)
	}
	post(t, hs.URL+"/v1/chat/completions", chat("tiny", "count me", 3))
	m := metricsText(t, hs.URL)
	for _, want := range []string{
		`idefics2_requests_total{route="chat_completions",code="200"} 1`,
		"# TYPE idefics2_request_duration_seconds histogram",
		"idefics2_time_to_first_token_seconds_count 1",
		"idefics2_queue_depth 0",
		"idefics2_batch_rows 0",
		"idefics2_generated_tokens_total",
		"idefics2_prompt_tokens_total",
		"idefics2_batch_size_count 2", // one observation per decode step: of 3 tokens the first comes from the prefill
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, m)
		}
	}
}
