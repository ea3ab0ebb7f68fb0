package cauldron

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
)

// imageColumn reads one column holding a row's images, in any of the shapes datasets use:
// HF's Image struct or a list of them (bytes, or a path when the bytes were not embedded), a
// path string or a list of paths (relative to the dataset file), or raw bytes.
type imageColumn struct {
	name string
	kind imageKind
	dir  string // relative paths are resolved against the data file's folder
}

type imageKind int

const (
	imgStruct imageKind = iota
	imgStructList
	imgPath
	imgPathList
	imgBytes
)

func newImageColumn(name string, dt arrow.DataType, dir string) (*imageColumn, bool) {
	c := &imageColumn{name: name, dir: dir}
	switch {
	case imageStructOK(dt):
		c.kind = imgStruct
	case isText(dt):
		c.kind = imgPath
	case isBytes(dt):
		c.kind = imgBytes
	default:
		elem, ok := listElem(dt)
		switch {
		case ok && imageStructOK(elem):
			c.kind = imgStructList
		case ok && isText(elem):
			c.kind = imgPathList
		default:
			return nil, false
		}
	}
	return c, true
}

const imageShapes = "struct<bytes: binary, path: string>, list<struct<bytes: binary, path: string>>, string (path), list<string> (paths) or binary"

// read returns the row's images; a null column value is a null field.
func (c *imageColumn) read(a arrow.Array, i int) ([]Image, error) {
	if a.IsNull(i) {
		return nil, skipf(ReasonNullField, "column %q is null", c.name)
	}
	switch c.kind {
	case imgStruct:
		im, err := c.fromStruct(a, i)
		if err != nil {
			return nil, err
		}
		return []Image{im}, nil
	case imgPath:
		p, _ := textAt(a, i)
		im, err := c.fromPath(p)
		if err != nil {
			return nil, err
		}
		return []Image{im}, nil
	case imgBytes:
		b, _ := bytesAt(a, i)
		if len(b) == 0 {
			return nil, skipf(ReasonEmptyField, "column %q holds no bytes", c.name)
		}
		return []Image{{Bytes: b}}, nil
	}
	vals, s, e, _ := listAt(a, i)
	out := make([]Image, 0, e-s)
	for j := s; j < e; j++ {
		var im Image
		var err error
		if c.kind == imgStructList {
			im, err = c.fromStruct(vals, j)
		} else {
			p, ok := textAt(vals, j)
			if !ok {
				return nil, skipf(ReasonNullField, "column %q: image %d is null", c.name, j-s)
			}
			im, err = c.fromPath(p)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	return out, nil
}

func (c *imageColumn) fromStruct(a arrow.Array, j int) (Image, error) {
	if a.IsNull(j) {
		return Image{}, skipf(ReasonNullField, "column %q: image struct is null", c.name)
	}
	b, hasBytes := bytesAt(field(a, "bytes"), j)
	p, hasPath := textAt(field(a, "path"), j)
	switch {
	case hasBytes && len(b) > 0:
		return Image{Bytes: b, Path: p}, nil
	case hasBytes:
		return Image{}, skipf(ReasonEmptyField, "column %q: image bytes are empty", c.name)
	case hasPath && p != "":
		return c.fromPath(p)
	}
	return Image{}, skipf(ReasonNullField, "column %q: image has neither bytes nor path", c.name)
}

// fromPath reads an image file. The bytes are read here, not when the sample is processed, so
// that a missing file is counted against the row that names it.
func (c *imageColumn) fromPath(p string) (Image, error) {
	if p == "" {
		return Image{}, skipf(ReasonEmptyField, "column %q: empty image path", c.name)
	}
	full := p
	if !filepath.IsAbs(full) {
		full = filepath.Join(c.dir, p)
	}
	// A path naming a device or a pipe (/dev/zero) would be read forever: only files.
	if st, err := os.Stat(full); err == nil && !st.Mode().IsRegular() {
		return Image{}, skipf(ReasonBadImage, "column %q: %s is not a regular file", c.name, full)
	}
	b, err := os.ReadFile(full)
	if err != nil {
		return Image{}, Skip(ReasonBadImage, fmt.Errorf("column %q: %w", c.name, err))
	}
	if len(b) == 0 {
		return Image{}, skipf(ReasonBadImage, "column %q: image file %s is empty", c.name, full)
	}
	return Image{Bytes: b, Path: p}, nil
}
