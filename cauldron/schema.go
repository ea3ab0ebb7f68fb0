package cauldron

import (
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// SchemaError is returned when a file's columns cannot be read with the layout asked for. It
// is fatal (unlike a bad record): a wrong file in a dataset folder is a setup mistake that a
// person must fix, so it names the file and shows both schemas.
type SchemaError struct {
	File     string
	Layout   string
	Problem  string
	Expected string
	Found    string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s: schema does not match layout %q: %s; expected %s; found %s",
		e.File, e.Layout, e.Problem, e.Expected, e.Found)
}

// typeString prints Arrow types the way HF dataset cards read (string, list<...>,
// struct<...>), without the item names and nullability that differ between writers.
func typeString(dt arrow.DataType) string {
	if elem, ok := listElem(dt); ok {
		return "list<" + typeString(elem) + ">"
	}
	if st, ok := structType(dt); ok {
		parts := make([]string, st.NumFields())
		for i, f := range st.Fields() {
			parts[i] = f.Name + ": " + typeString(f.Type)
		}
		return "struct<" + strings.Join(parts, ", ") + ">"
	}
	switch {
	case isText(dt):
		return "string"
	case isBytes(dt):
		return "binary"
	}
	return dt.String()
}

func schemaString(sc *arrow.Schema) string {
	parts := make([]string, sc.NumFields())
	for i, f := range sc.Fields() {
		parts[i] = f.Name + ": " + typeString(f.Type)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func fieldType(sc *arrow.Schema, name string) (arrow.DataType, bool) {
	idx := sc.FieldIndices(name)
	if len(idx) == 0 {
		return nil, false
	}
	return sc.Field(idx[0]).Type, true
}

// Type shapes the layouts accept.

// imageStructOK: HF's Image feature, struct<bytes: binary, path: string> (path optional).
func imageStructOK(dt arrow.DataType) bool {
	st, ok := structType(dt)
	if !ok {
		return false
	}
	b, ok := st.FieldByName("bytes")
	if !ok || !isBytes(b.Type) {
		return false
	}
	if p, ok := st.FieldByName("path"); ok && !isText(p.Type) {
		return false
	}
	return true
}

func structHasText(dt arrow.DataType, names ...string) bool {
	st, ok := structType(dt)
	if !ok {
		return false
	}
	for _, n := range names {
		f, ok := st.FieldByName(n)
		if !ok || !isText(f.Type) {
			return false
		}
	}
	return true
}

func textListOK(dt arrow.DataType) bool {
	e, ok := listElem(dt)
	return ok && isText(e)
}
