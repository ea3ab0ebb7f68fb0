package data

import (
	"encoding/json"
	"testing"
)

// The two examples of spec §4.2, byte for byte.
func TestRenderChatSpecExamples(t *testing.T) {
	got, err := RenderChat([]Message{{Role: "user", Content: []Content{ImageItem(), Text("What is X?")}}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "User:<image>What is X?<end_of_utterance>\nAssistant:"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	got, _ = RenderChat([]Message{
		{Role: "user", Content: []Content{Text("Answer briefly."), ImageItem(), Text("What is X?")}},
		{Role: "assistant", Content: []Content{Text("42")}},
	}, false)
	if want := "User: Answer briefly.<image>What is X?<end_of_utterance>\nAssistant: 42<end_of_utterance>\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestRenderChatRolesAndErrors(t *testing.T) {
	got, _ := RenderChat([]Message{{Role: "SYSTEM", Content: []Content{Text("x"), {Type: "video"}}}}, false)
	if want := "System: x<end_of_utterance>\n"; got != want { // capitalize() lowers the rest; unknown items render nothing
		t.Errorf("got %q want %q", got, want)
	}
	if _, err := RenderChat([]Message{{Role: "user"}}, false); err == nil {
		t.Error("a message without content must be an error")
	}
}

func TestMessageJSON(t *testing.T) {
	var ms []Message
	if err := json.Unmarshal([]byte(`[{"role":"user","content":[{"type":"image"},{"type":"text","text":"hi"}]},{"role":"assistant","content":"yes"}]`), &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Content[0].Type != "image" || ms[1].Content[0].Text != "yes" {
		t.Fatalf("%+v", ms)
	}
}
