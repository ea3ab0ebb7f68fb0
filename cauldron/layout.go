package cauldron

import (
	"fmt"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
)

// Layout says how a file's columns become Records. The Cauldron, lmms-lab DocVQA and TextVQA
// have fixed layouts (Cauldron, DocVQA, TextVQA); a custom dataset describes its own with
// CustomLayout.
type Layout interface {
	// Name is used in messages and cursors.
	Name() string
	// Expected is the schema the layout needs, shown when a file does not have it.
	Expected() string
	// bind checks a file's schema and returns how to decode its rows.
	bind(sc *arrow.Schema, file string) (*binding, error)
}

// binding is a layout bound to one file's schema: which top-level columns to read, and how
// to turn row i of those columns (in that order) into a record. decode returns a SkipError
// for a bad row.
type binding struct {
	columns []string
	decode  func(cols []arrow.Array, i int, rec *Record) error
}

func schemaErr(l Layout, file string, sc *arrow.Schema, format string, args ...any) error {
	return &SchemaError{File: file, Layout: l.Name(), Problem: fmt.Sprintf(format, args...), Expected: l.Expected(), Found: schemaString(sc)}
}

// Cauldron is the layout of HuggingFaceM4/the_cauldron (spec §6.1):
// images: list<struct<bytes: binary, path: string>>,
// texts: list<struct<user: string, assistant: string, source: string>>.
var Cauldron Layout = cauldronLayout{}

type cauldronLayout struct{}

func (cauldronLayout) Name() string { return "cauldron" }

func (cauldronLayout) Expected() string {
	return "{images: list<struct<bytes: binary, path: string>>, texts: list<struct<user: string, assistant: string, source: string>>}"
}

func (l cauldronLayout) bind(sc *arrow.Schema, file string) (*binding, error) {
	dt, ok := fieldType(sc, "images")
	if !ok {
		return nil, schemaErr(l, file, sc, "column \"images\" is missing")
	}
	if elem, isList := listElem(dt); !isList || !imageStructOK(elem) {
		return nil, schemaErr(l, file, sc, "column \"images\" is %s", typeString(dt))
	}
	imgs, _ := newImageColumn("images", dt, filepath.Dir(file))
	texts, err := bindTexts(l, sc, file, "texts")
	if err != nil {
		return nil, err
	}
	return &binding{
		columns: []string{"images", "texts"},
		decode: func(cols []arrow.Array, i int, rec *Record) error {
			var err error
			if rec.Images, err = imgs.read(cols[0], i); err != nil {
				return err
			}
			if rec.Turns, err = texts(cols[1], i); err != nil {
				return err
			}
			return checkRecord(rec, false)
		},
	}, nil
}

// bindTexts checks a Cauldron-style texts column and returns its reader.
func bindTexts(l Layout, sc *arrow.Schema, file, name string) (func(arrow.Array, int) ([]Turn, error), error) {
	dt, ok := fieldType(sc, name)
	if !ok {
		return nil, schemaErr(l, file, sc, "column %q is missing", name)
	}
	if elem, isList := listElem(dt); !isList || !structHasText(elem, "user", "assistant") {
		return nil, schemaErr(l, file, sc, "column %q is %s", name, typeString(dt))
	}
	return func(a arrow.Array, i int) ([]Turn, error) {
		vals, s, e, ok := listAt(a, i)
		if !ok {
			return nil, skipf(ReasonNullField, "column %q is null", name)
		}
		if e == s {
			return nil, skipf(ReasonEmptyField, "column %q is empty", name)
		}
		users, assistants, sources := field(vals, "user"), field(vals, "assistant"), field(vals, "source")
		turns := make([]Turn, 0, e-s)
		for j := s; j < e; j++ {
			if vals.IsNull(j) {
				return nil, skipf(ReasonNullField, "%s[%d] is null", name, j-s)
			}
			u, okU := textAt(users, j)
			a, okA := textAt(assistants, j)
			src, _ := textAt(sources, j)
			switch {
			case !okU:
				return nil, skipf(ReasonNullField, "%s[%d].user is null", name, j-s)
			case !okA:
				return nil, skipf(ReasonNullField, "%s[%d].assistant is null", name, j-s)
			case u == "":
				return nil, skipf(ReasonEmptyField, "%s[%d].user is empty", name, j-s)
			case a == "":
				return nil, skipf(ReasonEmptyField, "%s[%d].assistant is empty", name, j-s)
			}
			turns = append(turns, Turn{User: u, Assistant: a, Source: src})
		}
		return turns, nil
	}, nil
}

// checkRecord applies the structural rules every layout shares: images present (unless
// allowed), and as many images as the text asks for.
func checkRecord(rec *Record, allowNoImages bool) error {
	if len(rec.Images) == 0 && !allowNoImages {
		return skipf(ReasonEmptyField, "no images")
	}
	if len(rec.Chat) > 0 {
		if n := chatImageCount(rec.Chat); n != len(rec.Images) {
			return skipf(ReasonImageCount, "messages have %d image items for %d images", n, len(rec.Images))
		}
		return nil
	}
	if n := placeholderCount(rec.Turns); n > 0 && n != len(rec.Images) {
		return skipf(ReasonImageCount, "text has %d %s placeholders for %d images", n, ImagePlaceholder, len(rec.Images))
	}
	return nil
}
