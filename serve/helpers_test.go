package serve

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/lora"
	"github.com/idefics2/idefics2/model"
	"github.com/idefics2/idefics2/session"
	"github.com/idefics2/idefics2/train"
)

// The tests run the real stack on the tiny random Idefics2 (real tokenizer, 32,003 tokens) with
// small images, plus one adapter on it whose lora_B is random, so that it answers differently.
var tiny struct {
	once    sync.Once
	dir     string
	models  *Models
	err     error
	adapter string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tiny.models != nil {
		tiny.models.Close()
	}
	if tiny.dir != "" {
		os.RemoveAll(tiny.dir)
	}
	os.Exit(code)
}

// tinyOptions are the session options of the tiny model.
func tinyOptions(t *testing.T) session.Options {
	tinySetup(t)
	root, err := fixtures.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return session.Options{Path: filepath.Join(tiny.dir, "model"), Tokenizer: filepath.Join(root, "testdata", "tokenizer", "idefics2"),
		DType: "float32", Compat: "trained"}
}

func tinySetup(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test builds and runs the tiny model (make test runs it without -short)")
	}
	tiny.once.Do(func() {
		if tiny.dir, tiny.err = os.MkdirTemp("", "idefics2-serve-test"); tiny.err != nil {
			return
		}
		dir := filepath.Join(tiny.dir, "model")
		if _, tiny.err = train.EnsureTiny(dir, 7); tiny.err != nil {
			return
		}
		// Small images keep the vision tower cheap on the pure Go backend.
		pre := `{"do_image_splitting": false, "size": {"longest_edge": 64, "shortest_edge": 32}}`
		if tiny.err = os.WriteFile(filepath.Join(dir, "preprocessor_config.json"), []byte(pre), 0o644); tiny.err != nil {
			return
		}
		tiny.adapter = filepath.Join(tiny.dir, "adapter")
		tiny.err = writeRandomAdapter(dir, tiny.adapter)
	})
	if tiny.err != nil {
		t.Fatal(tiny.err)
	}
}

// writeRandomAdapter writes a PEFT LoRA adapter for the model in dir with random A and B.
func writeRandomAdapter(modelDir, out string) error {
	m, err := model.Load(modelDir, dtypes.Float32)
	if err != nil {
		return err
	}
	cfg := lora.Config{R: 4, LoraAlpha: 8, TargetModules: lora.TargetModules{Regex: `.*text_model.*(q_proj|v_proj|down_proj)$`}, InitLoraWeights: "gaussian"}
	a, err := lora.Attach(m, cfg, 3)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(11, 12))
	var setErr error
	m.Ctx.EnumerateVariables(func(v *context.Variable) {
		if !strings.Contains(v.Scope(), "lora_B") {
			return
		}
		t := tensors.FromShape(v.Shape())
		tensors.MustMutableFlatData(t, func(f []float32) {
			for i := range f {
				f[i] = float32(rng.NormFloat64())
			}
		})
		if err := v.SetValue(t); err != nil {
			setErr = err
		}
	})
	if setErr != nil {
		return setErr
	}
	return lora.Export(a, out, nil, dtypes.Float32)
}

// tinyModels loads the base and the adapter (as "tuned") once for every test.
func tinyModels(t *testing.T) *Models {
	o := tinyOptions(t)
	if tiny.models == nil {
		so := DefaultOptions()
		so.Name = "tiny"
		so.Adapters = []string{"tuned=" + tiny.adapter}
		ms, err := LoadModels(o, so)
		if err != nil {
			t.Fatal(err)
		}
		tiny.models = ms
	}
	return tiny.models
}

// testServer serves the tiny models with o changed by edit, on loopback.
func testServer(t *testing.T, edit func(*Options)) (*Server, *httptest.Server) {
	ms := tinyModels(t)
	o := DefaultOptions()
	o.Name = "tiny"
	o.MaxPromptTokens = 512
	o.BatchWaitMS = 0
	if edit != nil {
		edit(&o)
	}
	s := New(ms, o)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.BeginShutdown()
	})
	return s, hs
}

// pngDataURL is a w×h PNG with a pattern drawn from seed, as a data: URL.
func pngDataURL(t *testing.T, w, h int, seed uint64) string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(pngBytes(t, w, h, seed))
}

func pngBytes(t *testing.T, w, h int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(rng.IntN(256)), uint8(x * 4), uint8(y * 4), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// post sends a JSON body and returns the status and the decoded JSON answer.
func post(t *testing.T, url string, body any) (int, map[string]any, http.Header) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		var list []map[string]any
		if err2 := json.Unmarshal(b, &list); err2 == nil && len(list) == 1 {
			return resp.StatusCode, list[0], resp.Header
		}
		t.Fatalf("answer is not JSON (%d): %.300s", resp.StatusCode, b)
	}
	return resp.StatusCode, out, resp.Header
}

// chat is a one-turn request: images first, then the question, as idefics2-generate builds it.
func chat(model, question string, maxTokens int, images ...string) map[string]any {
	var parts []any
	for _, u := range images {
		parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]any{"url": u}})
	}
	parts = append(parts, map[string]any{"type": "text", "text": question})
	return map[string]any{"model": model, "max_tokens": maxTokens, "temperature": 0,
		"messages": []any{map[string]any{"role": "user", "content": parts}}}
}

// answerOf is the message content of a chat completion.
func answerOf(t *testing.T, out map[string]any) string {
	t.Helper()
	choices, ok := out["choices"].([]any)
	if !ok || len(choices) != 1 {
		t.Fatalf("no choices in %v", out)
	}
	msg := choices[0].(map[string]any)["message"].(map[string]any)
	return msg["content"].(string)
}

func errorOf(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	return fmt.Sprint(e["message"])
}
