package cauldron

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixtureRoot = "../testdata/datasets"

// expectedFile is one entry of testdata/datasets/expected.json, written by
// scripts/make_datasets.py next to the shards it describes.
type expectedFile struct {
	Kind        string        `json:"kind"`
	Truncated   bool          `json:"truncated"`
	SchemaError bool          `json:"schema_error"`
	Rows        []expectedRow `json:"rows"`
}

type expectedRow struct {
	Row    int64  `json:"row"`
	Skip   string `json:"skip"`
	Images []struct {
		SHA256 string  `json:"sha256"`
		Len    int     `json:"len"`
		Path   *string `json:"path"`
	} `json:"images"`
	Texts    []Turn    `json:"texts"`
	ID       string    `json:"id"`
	Question string    `json:"question"`
	Answers  []string  `json:"answers"`
	Messages []Message `json:"messages"`
}

func loadExpected(t *testing.T) map[string]expectedFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureRoot, "expected.json"))
	if err != nil {
		t.Fatalf("fixtures missing (run scripts/make_datasets.py --out testdata/datasets): %v", err)
	}
	var meta struct {
		Files map[string]expectedFile `json:"files"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	return meta.Files
}

func layoutFor(kind string) Layout {
	switch kind {
	case "cauldron":
		return Cauldron
	case "docvqa":
		return DocVQA
	case "textvqa":
		return TextVQA
	}
	return CustomLayout{} // columns guessed from the file
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestFixturesRoundTrip reads every committed shard and compares every field of every row
// with what the Python writer put there.
func TestFixturesRoundTrip(t *testing.T) {
	for rel, want := range loadExpected(t) {
		if want.Truncated || want.SchemaError {
			continue
		}
		t.Run(rel, func(t *testing.T) {
			path := filepath.Join(fixtureRoot, rel)
			var got []*Record
			var bad []error
			err := Scan(context.Background(), Source{Name: "t", Files: []string{path}, Layout: layoutFor(want.Kind)}, nil,
				func(r *Record, b error) error {
					rc := *r
					if b == nil {
						if verr := validateHeaders(r); verr != nil {
							b = Skip(ReasonBadImage, verr)
						}
					}
					got, bad = append(got, &rc), append(bad, b)
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want.Rows) {
				t.Fatalf("%d rows, want %d", len(got), len(want.Rows))
			}
			for i, w := range want.Rows {
				r := got[i]
				if r.Row != w.Row || r.File != path {
					t.Errorf("row %d: ref %+v", i, r.Ref)
				}
				if w.Skip != "" {
					reason, ok := AsSkip(bad[i])
					if !ok || string(reason) != w.Skip {
						t.Errorf("row %d: skip %v, want %s", i, bad[i], w.Skip)
					}
					continue
				}
				if bad[i] != nil {
					t.Errorf("row %d: unexpected skip: %v", i, bad[i])
					continue
				}
				if len(r.Images) != len(w.Images) {
					t.Fatalf("row %d: %d images, want %d", i, len(r.Images), len(w.Images))
				}
				for j, im := range w.Images {
					g := r.Images[j]
					wp := ""
					if im.Path != nil {
						wp = *im.Path
					}
					if sha(g.Bytes) != im.SHA256 || len(g.Bytes) != im.Len || g.Path != wp {
						t.Errorf("row %d image %d: len %d path %q, want len %d path %q", i, j, len(g.Bytes), g.Path, im.Len, wp)
					}
				}
				switch want.Kind {
				case "cauldron":
					if !jsonEqual(r.Turns, w.Texts) {
						t.Errorf("row %d: turns %+v, want %+v", i, r.Turns, w.Texts)
					}
				case "docvqa", "textvqa", "qa":
					if r.ID != w.ID || r.Question != w.Question || !jsonEqual(r.Answers, w.Answers) {
						t.Errorf("row %d: id %q q %q a %q, want %q %q %q", i, r.ID, r.Question, r.Answers, w.ID, w.Question, w.Answers)
					}
					if len(r.Turns) != 1 || r.Turns[0].User != w.Question || r.Turns[0].Assistant != w.Answers[0] {
						t.Errorf("row %d: turns %+v", i, r.Turns)
					}
				case "messages":
					if !jsonEqual(r.Chat, w.Messages) {
						t.Errorf("row %d: chat %+v, want %+v", i, r.Chat, w.Messages)
					}
				case "jsonl":
					if len(r.Messages()) != 2 {
						t.Errorf("row %d: messages %+v", i, r.Messages())
					}
				}
			}
		})
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestSchemaMismatchIsOneClearError(t *testing.T) {
	files, err := Files(filepath.Join(fixtureRoot, "bad/wrong_schema/*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open([]Source{{Name: "wrong", Files: files, Layout: Cauldron}}, Options{})
	var se *SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a SchemaError", err)
	}
	msg := err.Error()
	for _, want := range []string{files[0], "images: list<struct<bytes: binary, path: string>>", "found {image: struct<bytes: binary, path: string>, text: string}"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
}

func TestHubLayoutDiscovery(t *testing.T) {
	srcs, err := CauldronSources(filepath.Join(fixtureRoot, "the_cauldron"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "docvqa,nlvr2,tiny_shapes" || len(srcs[0].Files) != 2 {
		t.Fatalf("sources %v", srcs)
	}
	if _, err := CauldronSources(filepath.Join(fixtureRoot, "the_cauldron"), "nope"); err == nil {
		t.Fatal("a missing subset must be an error")
	}
	d, err := DocVQASource(filepath.Join(fixtureRoot, "lmms-lab/DocVQA"), "validation")
	if err != nil || len(d.Files) != 1 {
		t.Fatal(d, err)
	}
	tv, err := TextVQASource(filepath.Join(fixtureRoot, "lmms-lab/textvqa"), "validation")
	if err != nil || len(tv.Files) != 1 {
		t.Fatal(tv, err)
	}
}
