package cauldron

import (
	"encoding/json"
	"testing"
)

func messagesJSON(t *testing.T, m []Message) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCauldronRecordToMessages(t *testing.T) {
	r := Record{
		Images: []Image{{Bytes: []byte{1}}, {Bytes: []byte{2}}},
		Turns:  []Turn{{User: "Q1?", Assistant: "A1."}, {User: "Q2?", Assistant: "A2."}},
	}
	// spec §6.1: one user turn per texts entry, images at the start of the first one.
	want := `[{"role":"user","content":[{"type":"image"},{"type":"image"},{"type":"text","text":"Q1?"}]},` +
		`{"role":"assistant","content":[{"type":"text","text":"A1."}]},` +
		`{"role":"user","content":[{"type":"text","text":"Q2?"}]},` +
		`{"role":"assistant","content":[{"type":"text","text":"A2."}]}]`
	if got := messagesJSON(t, r.Messages()); got != want {
		t.Errorf("messages\n got %s\nwant %s", got, want)
	}
	wantPrompt := want[:len(want)-len(`,{"role":"assistant","content":[{"type":"text","text":"A2."}]}]`)] + "]"
	if got := messagesJSON(t, r.Prompt()); got != wantPrompt {
		t.Errorf("prompt\n got %s\nwant %s", got, wantPrompt)
	}
}

func TestPlaceholdersPlaceImages(t *testing.T) {
	r := Record{Images: []Image{{}, {}}, Turns: []Turn{{User: "Left:<image> right:<image>Same?", Assistant: "No."}}}
	want := `[{"role":"user","content":[{"type":"text","text":"Left:"},{"type":"image"},{"type":"text","text":" right:"},{"type":"image"},{"type":"text","text":"Same?"}]},` +
		`{"role":"assistant","content":[{"type":"text","text":"No."}]}]`
	if got := messagesJSON(t, r.Messages()); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestEvalRecordPrompt(t *testing.T) {
	r := Record{Images: []Image{{}}, Question: "What is the total?", Answers: []string{"78", "$78"}}
	want := `[{"role":"user","content":[{"type":"image"},{"type":"text","text":"What is the total?"}]}]`
	if got := messagesJSON(t, r.Prompt()); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestChatRecordIsCopied(t *testing.T) {
	r := Record{Chat: []Message{{Role: "user", Content: []Content{{Type: "text", Text: "hi"}}}}}
	m := r.Messages()
	m[0].Content[0].Text = "changed"
	if r.Chat[0].Content[0].Text != "hi" {
		t.Fatal("Messages aliases the record's chat")
	}
}
