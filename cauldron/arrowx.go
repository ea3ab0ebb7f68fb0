package cauldron

import (
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Small accessors over Arrow arrays. Files written by different pyarrow/datasets versions
// differ in string vs large_string, list vs large_list and list item names, none of which
// matter here, so every accessor takes all of them.

func isText(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return true
	}
	return false
}

func isBytes(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.BINARY, arrow.LARGE_BINARY, arrow.BINARY_VIEW:
		return true
	}
	return false
}

func isInteger(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		return true
	}
	return false
}

// listElem returns the element type of a list or large list.
func listElem(dt arrow.DataType) (arrow.DataType, bool) {
	switch t := dt.(type) {
	case *arrow.ListType:
		return t.Elem(), true
	case *arrow.LargeListType:
		return t.Elem(), true
	}
	return nil, false
}

func structType(dt arrow.DataType) (*arrow.StructType, bool) {
	t, ok := dt.(*arrow.StructType)
	return t, ok
}

// textAt copies the string at i (Arrow's buffers are released after each row group, so
// nothing may point into them).
func textAt(a arrow.Array, i int) (string, bool) {
	if a == nil || a.IsNull(i) {
		return "", false
	}
	switch v := a.(type) {
	case *array.String:
		return strings.Clone(v.Value(i)), true
	case *array.LargeString:
		return strings.Clone(v.Value(i)), true
	case *array.StringView:
		return strings.Clone(v.Value(i)), true
	case *array.Binary:
		return string(v.Value(i)), true
	case *array.LargeBinary:
		return string(v.Value(i)), true
	}
	return "", false
}

// idAt renders a string or integer id column as text.
func idAt(a arrow.Array, i int) (string, bool) {
	if a == nil || a.IsNull(i) {
		return "", false
	}
	switch v := a.(type) {
	case *array.Int8:
		return strconv.FormatInt(int64(v.Value(i)), 10), true
	case *array.Int16:
		return strconv.FormatInt(int64(v.Value(i)), 10), true
	case *array.Int32:
		return strconv.FormatInt(int64(v.Value(i)), 10), true
	case *array.Int64:
		return strconv.FormatInt(v.Value(i), 10), true
	case *array.Uint8:
		return strconv.FormatUint(uint64(v.Value(i)), 10), true
	case *array.Uint16:
		return strconv.FormatUint(uint64(v.Value(i)), 10), true
	case *array.Uint32:
		return strconv.FormatUint(uint64(v.Value(i)), 10), true
	case *array.Uint64:
		return strconv.FormatUint(v.Value(i), 10), true
	}
	return textAt(a, i)
}

// bytesAt copies the binary value at i.
func bytesAt(a arrow.Array, i int) ([]byte, bool) {
	if a == nil || a.IsNull(i) {
		return nil, false
	}
	var b []byte
	switch v := a.(type) {
	case *array.Binary:
		b = v.Value(i)
	case *array.LargeBinary:
		b = v.Value(i)
	case *array.BinaryView:
		b = v.Value(i)
	default:
		return nil, false
	}
	return append(make([]byte, 0, len(b)), b...), true
}

// listAt returns the values array of a list column and the range of row i in it.
func listAt(a arrow.Array, i int) (values arrow.Array, start, end int, ok bool) {
	if a == nil || a.IsNull(i) {
		return nil, 0, 0, false
	}
	l, isList := a.(array.ListLike)
	if !isList {
		return nil, 0, 0, false
	}
	s, e := l.ValueOffsets(i)
	return l.ListValues(), int(s), int(e), true
}

// textsAt reads a list<string> value; a null list is (nil, false), null items are dropped.
func textsAt(a arrow.Array, i int) ([]string, bool) {
	vals, s, e, ok := listAt(a, i)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, e-s)
	for j := s; j < e; j++ {
		if t, ok := textAt(vals, j); ok {
			out = append(out, t)
		}
	}
	return out, true
}

// field returns the child array of a struct array by name (nil when absent).
func field(a arrow.Array, name string) arrow.Array {
	st, ok := a.(*array.Struct)
	if !ok {
		return nil
	}
	idx, ok := st.DataType().(*arrow.StructType).FieldIdx(name)
	if !ok {
		return nil
	}
	return st.Field(idx)
}
