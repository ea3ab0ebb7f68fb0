package serve

import (
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad requests are a 4xx with OpenAI's error object naming what is wrong; none reaches the
// queue, and the server answers the next request normally.
func TestChatErrors(t *testing.T) {
	root := t.TempDir()
	img := pngBytes(t, 20, 20, 9)
	if err := os.WriteFile(filepath.Join(root, "ok.png"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret.png")
	os.WriteFile(outside, img, 0o644)
	os.Symlink(outside, filepath.Join(root, "link.png"))

	s, hs := testServer(t, func(o *Options) {
		o.MaxImages = 2
		o.MaxPromptTokens = 60
		o.MaxRequestBytes = 200_000
		o.MaxNewTokens = 100
		o.ImageRoot = root
	})
	good := pngDataURL(t, 20, 20, 1)
	user := func(content any) map[string]any {
		return map[string]any{"messages": []any{map[string]any{"role": "user", "content": content}}, "max_tokens": 2}
	}
	imagePart := func(url string) map[string]any {
		return map[string]any{"type": "image_url", "image_url": map[string]any{"url": url}}
	}
	withField := func(k string, v any) map[string]any {
		r := chat("tiny", "hi", 2)
		r[k] = v
		return r
	}
	bomb := func() string {
		// A PNG header declaring 30000×30000 pixels: refused from the header, nothing decoded.
		b := pngBytes(t, 4, 4, 1)
		b[16], b[17], b[18], b[19] = 0, 0, 0x75, 0x30
		b[20], b[21], b[22], b[23] = 0, 0, 0x75, 0x30
		binary.BigEndian.PutUint32(b[29:33], crc32.ChecksumIEEE(b[12:29]))
		return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b)
	}
	cases := []struct {
		name   string
		body   any
		status int
		want   string // in the error message
	}{
		{"not JSON", `{"messages": [`, 400, "not valid JSON"},
		{"empty body", ``, 400, "empty"},
		{"two values", `{} {}`, 400, "more than one"},
		{"no messages", `{"model": "tiny"}`, 400, "messages must be a non-empty list"},
		{"messages wrong type", `{"messages": "hi"}`, 400, "not valid JSON"},
		{"unknown model", chat("gpt-4o", "hi", 2), 400, `model "gpt-4o" is not served here`},
		{"bad role", map[string]any{"messages": []any{map[string]any{"role": "tool", "content": "x"}}}, 400, `role "tool"`},
		{"null content", user(nil), 400, "has no content"},
		{"empty parts", user([]any{}), 400, "empty content list"},
		{"unknown part", user([]any{map[string]any{"type": "input_audio"}}), 400, `type "input_audio"`},
		{"literal image token", user("look <image> here"), 400, "literal <image>"},
		{"undecodable image", user([]any{imagePart("data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte("not an image at all")))}), 400, "does not decode"},
		{"bad base64", user([]any{imagePart("data:image/png;base64,@@@@")}), 400, "not valid base64"},
		{"not base64", user([]any{imagePart("data:image/png,rawbytes")}), 400, "must be base64"},
		{"decompression bomb", user([]any{imagePart(bomb())}), 400, "image too large"},
		{"too many images", user([]any{imagePart(good), imagePart(good), imagePart(good)}), 400, "at most 2 per request"},
		{"remote off", user([]any{imagePart("http://127.0.0.1:1/x.png")}), 400, "http(s) image URLs are off"},
		{"outside root", user([]any{imagePart(outside)}), 400, "outside the image root"},
		{"link out of root", user([]any{imagePart("link.png")}), 400, "outside the image root"},
		{"missing file", user([]any{imagePart("nope.png")}), 400, "no such file"},
		{"ftp", user([]any{imagePart("ftp://x/y.png")}), 400, "scheme"},
		{"prompt too long", chat("tiny", strings.Repeat("word ", 100), 2), 400, "at most 60"},
		{"max_tokens 0", withField("max_tokens", 0), 400, "must be at least 1"},
		{"max_tokens too many", withField("max_tokens", 1000), 400, "at most 100 tokens"},
		{"temperature", withField("temperature", 3), 400, "temperature"},
		{"top_p", withField("top_p", 0), 400, "top_p"},
		{"n", withField("n", 2), 400, "n must be 1"},
		{"stop type", withField("stop", 5), 400, "stop must be"},
		{"too many stops", withField("stop", []string{"a", "b", "c", "d", "e"}), 400, "at most 4"},
		{"logprobs", withField("logprobs", true), 400, "logprobs"},
		{"too large", `{"messages": [{"role": "user", "content": "` + strings.Repeat("x", 300_000) + `"}]}`, 413, "larger than the server's limit"},
	}
	for _, c := range cases {
		code, out, _ := post(t, hs.URL+"/v1/chat/completions", c.body)
		e, _ := out["error"].(map[string]any)
		if code != c.status || e == nil || !strings.Contains(errorOf(out), c.want) || e["type"] == nil {
			t.Errorf("%s: status %d, %v; want %d with %q", c.name, code, out, c.status, c.want)
		}
	}
	// A file inside the root is allowed.
	if code, out, _ := post(t, hs.URL+"/v1/chat/completions", user([]any{imagePart("ok.png"), map[string]any{"type": "text", "text": "hi"}})); code != 200 {
		t.Errorf("image under the root: %d %v", code, out)
	}
	if d := s.metrics.queueDepth.Load(); d != 0 {
		t.Errorf("queue depth %d", d)
	}
	if code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "still fine?", 2)); code != 200 {
		t.Errorf("after the errors: %d %v", code, out)
	}
	resp, err := http.Get(hs.URL + "/v1/nothing")
	if err != nil || resp.StatusCode != 404 {
		t.Errorf("unknown route: %v %v", resp.StatusCode, err)
	}
}

// Remote images are fetched only when allowed, within the size cap.
func TestRemoteImages(t *testing.T) {
	img := pngBytes(t, 24, 24, 5)
	files := http.NewServeMux()
	files.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) { w.Write(img) })
	files.HandleFunc("/big.png", func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 5000)) })
	_, fs := testServerFiles(t, files)
	_, hs := testServer(t, func(o *Options) { o.AllowRemoteImages = true; o.MaxImageBytes = 4000 })
	if code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "remote", 2, fs+"/img.png")); code != 200 {
		t.Errorf("remote image: %d %v", code, out)
	}
	if code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "remote", 2, fs+"/big.png")); code != 400 || !strings.Contains(errorOf(out), "limit") {
		t.Errorf("remote image over the cap: %d %v", code, out)
	}
	if code, out, _ := post(t, hs.URL+"/v1/chat/completions", chat("tiny", "remote", 2, fs+"/missing.png")); code != 400 || !strings.Contains(errorOf(out), "404") {
		t.Errorf("remote 404: %d %v", code, out)
	}
}
