package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func TestURLs(t *testing.T) {
	m, _ := ParseRepo("HuggingFaceM4/idefics2-8b", Model)
	d, _ := ParseRepo("datasets/HuggingFaceM4/the_cauldron@refs/convert/parquet", Model)
	cases := map[string]string{
		TreeURL(DefaultEndpoint, m):                            "https://huggingface.co/api/models/HuggingFaceM4/idefics2-8b/tree/main?recursive=true&expand=false",
		TreeURL("https://mirror.example/", d):                  "https://mirror.example/api/datasets/HuggingFaceM4/the_cauldron/tree/refs%2Fconvert%2Fparquet?recursive=true&expand=false",
		ResolveURL(DefaultEndpoint, m, "config.json"):          "https://huggingface.co/HuggingFaceM4/idefics2-8b/resolve/main/config.json",
		ResolveURL(DefaultEndpoint, d, "ai2d/train 0.parquet"): "https://huggingface.co/datasets/HuggingFaceM4/the_cauldron/resolve/refs%2Fconvert%2Fparquet/ai2d/train%200.parquet",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
	if d.Kind != Dataset || d.ID != "HuggingFaceM4/the_cauldron" || d.Revision != "refs/convert/parquet" {
		t.Errorf("parsed %+v", d)
	}
	for _, bad := range []string{"idefics2-8b", "a/b/c", "/x"} {
		if _, err := ParseRepo(bad, Model); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func cauldronListing() []File {
	var fs []File
	for _, sub := range []string{"ai2d", "docvqa", "textvqa"} {
		n := map[string]int{"ai2d": 1, "docvqa": 14, "textvqa": 12}[sub]
		for i := 0; i < n; i++ {
			fs = append(fs, File{Path: fmt.Sprintf("%s/train-%05d-of-%05d-%016x.parquet", sub, i, n, i*977), Size: 1})
		}
	}
	return append(fs, File{Path: "README.md"}, File{Path: ".gitattributes"})
}

func paths(fs []File) string {
	var p []string
	for _, f := range fs {
		p = append(p, f.Path)
	}
	return strings.Join(p, " ")
}

func TestSelection(t *testing.T) {
	all := cauldronListing()
	sel, _ := Select(all, CauldronPatterns([]string{"docvqa"}), nil)
	if len(sel) != 14 || !strings.HasPrefix(sel[0].Path, "docvqa/train-00000-of-00014-") {
		t.Fatalf("docvqa: %s", paths(sel))
	}
	keep, err := ParseShards("0-1,13")
	if err != nil {
		t.Fatal(err)
	}
	got := FilterShards(sel, keep)
	if len(got) != 3 || !strings.Contains(got[2].Path, "train-00013-of-00014") {
		t.Fatalf("shards: %s", paths(got))
	}
	sel, _ = Select(all, CauldronPatterns(nil), nil)
	if len(sel) != 27 {
		t.Fatalf("all subsets: %d files", len(sel))
	}
	// fnmatch semantics: * crosses '/', like huggingface_hub's allow_patterns.
	model := []File{{Path: "config.json"}, {Path: "model-00001-of-00007.safetensors"}, {Path: "pytorch_model.bin"},
		{Path: "tokenizer.model"}, {Path: "sub/extra.json"}, {Path: "model.safetensors.index.json"}}
	sel, _ = Select(model, DefaultModelPatterns, []string{"sub/*"})
	if paths(sel) != "config.json model-00001-of-00007.safetensors model.safetensors.index.json tokenizer.model" {
		t.Fatalf("model files: %s", paths(sel))
	}
	sel, _ = Select(model, []string{"model-0000[!2-9]-of-*"}, nil)
	if paths(sel) != "model-00001-of-00007.safetensors" {
		t.Fatalf("class: %s", paths(sel))
	}
	for _, bad := range []string{"x", "3-1", "1-", "-2"} {
		if _, err := ParseShards(bad); err == nil {
			t.Errorf("shards %q accepted", bad)
		}
	}
	if n, ok := ShardIndex("textvqa/train-00011-of-00012-0496147841e1c23a.parquet"); !ok || n != 11 {
		t.Errorf("ShardIndex: %d %v", n, ok)
	}
	if n, ok := ShardIndex("data/validation-00002-of-00003.parquet"); !ok || n != 2 {
		t.Errorf("ShardIndex without hash: %d %v", n, ok)
	}
}

func TestParseArgs(t *testing.T) {
	req, err := ParseArgs([]string{"cauldron", "--subsets", "docvqa,textvqa", "--shards", "0", "--out", "/data/c"})
	if err != nil {
		t.Fatal(err)
	}
	if req.Repo.String() != "datasets/HuggingFaceM4/the_cauldron@main" || strings.Join(req.Include, " ") != "docvqa/train-*.parquet textvqa/train-*.parquet" || req.Out != "/data/c" || !req.Shards(0) || req.Shards(1) {
		t.Fatalf("%+v", req)
	}
	req, err = ParseArgs([]string{"model", "--dry-run"})
	if err != nil || req.Repo.ID != DefaultModel || !req.DryRun || req.Out != filepath.Join("hf", "HuggingFaceM4", "idefics2-8b") {
		t.Fatalf("%+v %v", req, err)
	}
	req, err = ParseArgs([]string{"model", "HuggingFaceM4/idefics2-8b-base", "--revision", "v1", "--include", "*.json"})
	if err != nil || req.Repo.ID != "HuggingFaceM4/idefics2-8b-base" || req.Repo.Revision != "v1" || strings.Join(req.Include, ",") != "*.json" {
		t.Fatalf("%+v %v", req, err)
	}
	req, err = ParseArgs([]string{"eval", "textvqa", "--split", "train"})
	if err != nil || req.Repo.ID != "lmms-lab/textvqa" || req.Include[0] != "data/train-*.parquet" {
		t.Fatalf("%+v %v", req, err)
	}
	for _, bad := range [][]string{{}, {"nope"}, {"eval"}, {"eval", "mmmu"}, {"dataset"}, {"cauldron", "--shards", "x"}} {
		if _, err := ParseArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// fakeHub serves a tree listing in pages of two, and file contents with Range support behind
// a redirect to another path, as the hub's CDN does.
type fakeHub struct {
	files    map[string][]byte
	token    string
	failOnce atomic.Bool // cut the first content response short
	gets     atomic.Int64
	ranges   atomic.Int64 // content requests that resumed with a Range header
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.token != "" && r.Header.Get("Authorization") != "Bearer "+h.token && !strings.HasPrefix(r.URL.Path, "/cdn/") {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	const treePrefix = "/api/datasets/o/d/tree/main"
	switch {
	case r.URL.Path == treePrefix:
		var names []string
		for n := range h.files {
			names = append(names, n)
		}
		sortStrings(names)
		start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		end := min(start+2, len(names))
		var page []map[string]any
		for _, n := range names[start:end] {
			sum := sha256.Sum256(h.files[n])
			page = append(page, map[string]any{"type": "file", "path": n, "size": 134,
				"lfs": map[string]any{"oid": hex.EncodeToString(sum[:]), "size": len(h.files[n])}})
		}
		page = append(page, map[string]any{"type": "directory", "path": "sub"})
		if end < len(names) {
			w.Header().Set("Link", fmt.Sprintf(`<http://%s%s?recursive=true&cursor=%d>; rel="next"`, r.Host, treePrefix, end))
		}
		json.NewEncoder(w).Encode(page)
	case strings.HasPrefix(r.URL.Path, "/datasets/o/d/resolve/main/"):
		http.Redirect(w, r, "/cdn/"+strings.TrimPrefix(r.URL.Path, "/datasets/o/d/resolve/main/"), http.StatusFound)
	case strings.HasPrefix(r.URL.Path, "/cdn/"):
		h.gets.Add(1)
		if r.Header.Get("Range") != "" {
			h.ranges.Add(1)
		}
		b, ok := h.files[strings.TrimPrefix(r.URL.Path, "/cdn/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if h.failOnce.CompareAndSwap(true, false) {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b[:len(b)/2]) // the connection drops mid-file
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "", zeroTime, bytes.NewReader(b))
	default:
		http.NotFound(w, r)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func newFake(t *testing.T) (*fakeHub, *Client) {
	h := &fakeHub{token: "secret", files: map[string][]byte{}}
	for i := 0; i < 3; i++ {
		h.files[fmt.Sprintf("sub/train-%05d-of-00003-abc.parquet", i)] = bytes.Repeat([]byte{byte(i)}, 5000+i)
	}
	h.files["README.md"] = []byte("# readme\n")
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, &Client{Endpoint: srv.URL, Token: "secret", HTTP: srv.Client(), Retries: 2}
}

func TestListDownloadResume(t *testing.T) {
	h, c := newFake(t)
	ctx := context.Background()
	repo := Repo{Kind: Dataset, ID: "o/d"}
	files, err := c.ListFiles(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 || files[1].SHA256 == "" || files[1].Size != 5000 {
		t.Fatalf("listing %+v", files)
	}
	keep, _ := ParseShards("1-2")
	sel, _ := Select(files, []string{"sub/*.parquet"}, nil)
	sel = FilterShards(sel, keep)
	if len(sel) != 2 {
		t.Fatalf("selected %s", paths(sel))
	}
	dir := t.TempDir()
	h.failOnce.Store(true) // the first transfer breaks; the retry resumes with a Range request
	if err := c.Snapshot(ctx, repo, sel, dir, 1); err != nil {
		t.Fatal(err)
	}
	if h.ranges.Load() != 1 {
		t.Fatalf("%d resumed requests, want 1", h.ranges.Load())
	}
	for _, f := range sel {
		b, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil || !bytes.Equal(b, h.files[f.Path]) {
			t.Fatalf("%s: %v", f.Path, err)
		}
	}
	// Complete files are not fetched again.
	before := h.gets.Load()
	if err := c.Snapshot(ctx, repo, sel, dir, 2); err != nil || h.gets.Load() != before {
		t.Fatalf("second snapshot: %v, %d new requests", err, h.gets.Load()-before)
	}
	// A corrupted partial file fails the checksum and is removed.
	bad := sel[0]
	os.Remove(filepath.Join(dir, bad.Path))
	os.WriteFile(filepath.Join(dir, bad.Path+".incomplete"), bytes.Repeat([]byte{9}, 100), 0o644)
	if err := c.Download(ctx, repo, bad, dir); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("corrupt partial: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, bad.Path+".incomplete")); !os.IsNotExist(err) {
		t.Fatal("a partial file that failed its checksum was kept")
	}
	if err := c.Download(ctx, repo, bad, dir); err != nil {
		t.Fatalf("download after a bad partial: %v", err)
	}
}

func TestErrorsAreExplained(t *testing.T) {
	_, c := newFake(t)
	c.Token = ""
	_, err := c.ListFiles(context.Background(), Repo{Kind: Dataset, ID: "o/d"})
	if err == nil || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("unauthorized: %v", err)
	}
	c.Token = "secret"
	_, err = c.ListFiles(context.Background(), Repo{Kind: Model, ID: "o/d"})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("wrong kind: %v", err)
	}
}

func TestMainDryRun(t *testing.T) {
	_, c := newFake(t)
	var out, errb bytes.Buffer
	code := Main(context.Background(), c, []string{"dataset", "o/d", "--include", "sub/*", "--shards", "0", "--dry-run"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), c.Endpoint+"/datasets/o/d/resolve/main/sub/train-00000-of-00003-abc.parquet") ||
		!strings.Contains(out.String(), "1 files") {
		t.Fatalf("dry run printed:\n%s", out.String())
	}
	if code := Main(context.Background(), c, []string{"dataset", "o/d", "--include", "nothing*"}, &out, &errb); code != 1 {
		t.Fatalf("no match: exit %d", code)
	}
}
