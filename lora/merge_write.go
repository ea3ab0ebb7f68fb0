package lora

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"syscall"
	"unsafe"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/idefics2/idefics2/model"
	"github.com/nlpodyssey/safetensors"
	"github.com/x448/float16"
)

// fileDType maps a GoMLX dtype to the safetensors dtype written for it (F32 or BF16).
func fileDType(dt dtypes.DType) (safetensors.DType, error) {
	switch dt {
	case dtypes.Float32:
		return safetensors.F32, nil
	case dtypes.BFloat16:
		return safetensors.BF16, nil
	}
	return 0, fmt.Errorf("dtype %s cannot be written (float32 or bfloat16)", dt)
}

// floatReader returns a function reading element i of a floating point tensor as float32
// (exactly, except F64).
func floatReader(v safetensors.TensorView) (func(i int) float32, error) {
	src := v.Data()
	switch v.DType() {
	case safetensors.F32:
		return func(i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])) }, nil
	case safetensors.BF16:
		return func(i int) float32 { return math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16) }, nil
	case safetensors.F16:
		return func(i int) float32 { return float16.Frombits(binary.LittleEndian.Uint16(src[2*i:])).Float32() }, nil
	case safetensors.F64:
		return func(i int) float32 { return float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))) }, nil
	}
	return nil, fmt.Errorf("dtype %s is not a floating point type", v.DType())
}

// viewFloats decodes a floating point tensor to float32 (exactly, except F64).
func viewFloats(v safetensors.TensorView) ([]float32, error) {
	at, err := floatReader(v)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(v.Data())/int(v.DType().Size()))
	for i := range out {
		out[i] = at(i)
	}
	return out, nil
}

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// mappedFloats is viewFloats for a view of a memory-mapped file: it decodes chunk by chunk and
// drops each chunk's pages once decoded, so that the tensor is resident once, as float32.
func mappedFloats(v safetensors.TensorView) ([]float32, error) {
	at, err := floatReader(v)
	if err != nil {
		return nil, err
	}
	size := int(v.DType().Size())
	out := make([]float32, len(v.Data())/size)
	const chunk = 8 << 20 // elements
	for lo := 0; lo < len(out); lo += chunk {
		hi := min(lo+chunk, len(out))
		for i := lo; i < hi; i++ {
			out[i] = at(i)
		}
		release(v.Data()[lo*size : hi*size])
	}
	return out, nil
}

// encodeFloats encodes f as F32 or BF16 (round to nearest even, as PyTorch converts), reusing
// f's memory: f must not be used afterwards.
func encodeFloats(f []float32, dt safetensors.DType) ([]byte, error) {
	switch dt {
	case safetensors.F32:
		if len(f) == 0 {
			return nil, nil
		}
		if littleEndian { // the float32s are already the file's bytes: no second copy of the tensor
			return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f)), nil
		}
		b := make([]byte, 4*len(f))
		for i, x := range f {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b, nil
	case safetensors.BF16:
		if len(f) == 0 {
			return nil, nil
		}
		// In place: element i goes to bytes 2i, 2i+1 of f's memory, which hold no float not read yet.
		b := unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
		for i, x := range f {
			binary.LittleEndian.PutUint16(b[2*i:], model.BF16RoundNearestEven(x).Bits())
		}
		return b[:2*len(f)], nil
	}
	return nil, fmt.Errorf("dtype %s cannot be written (F32 or BF16)", dt)
}

func floatsView(f []float32, shape []int, dt safetensors.DType) (safetensors.TensorView, error) {
	data, err := encodeFloats(f, dt)
	if err != nil {
		return safetensors.TensorView{}, err
	}
	s := make([]uint64, len(shape))
	for i, d := range shape {
		s[i] = uint64(d)
	}
	return safetensors.NewTensorView(dt, s, data)
}

// shardEntry is one tensor of an output shard.
type shardEntry struct {
	Name  string
	DType safetensors.DType
	Shape []int
}

func (e shardEntry) bytes() int64 {
	n := int64(e.DType.Size())
	for _, d := range e.Shape {
		n *= int64(d)
	}
	return n
}

// planShards splits entries, in order, into shards of at most max bytes of tensor data, as
// transformers' save_pretrained does: a tensor larger than max gets a shard of its own.
func planShards(entries []shardEntry, max int64) [][]shardEntry {
	var shards [][]shardEntry
	var cur []shardEntry
	size := int64(0)
	for _, e := range entries {
		b := e.bytes()
		if len(cur) > 0 && size+b > max {
			shards = append(shards, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e)
		size += b
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	return shards
}

// writeShard streams a safetensors file: the header (known from the shapes alone), then each
// tensor's bytes as produce returns them, so that only one tensor is in memory at a time. When
// produce says the bytes are memory-mapped from a file, they are written in chunks whose pages are
// dropped from the resident set once written. after, when set, is called once a tensor's bytes
// are written. The file appears under path only once complete.
func writeShard(path string, entries []shardEntry, meta map[string]string, produce func(e shardEntry) (data []byte, mapped bool, err error), after func(e shardEntry)) error {
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	offset := int64(0)
	for _, e := range entries {
		b := e.bytes()
		header[e.Name] = map[string]any{"dtype": e.DType.String(), "shape": e.Shape, "data_offsets": []int64{offset, offset + b}}
		offset += b
	}
	hdr, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
	if _, err := w.Write(n[:]); err != nil {
		return fail(err)
	}
	if _, err := w.Write(hdr); err != nil {
		return fail(err)
	}
	for _, e := range entries {
		data, mapped, err := produce(e)
		if err != nil {
			return fail(err)
		}
		if int64(len(data)) != e.bytes() {
			return fail(fmt.Errorf("%s: %d bytes produced, %d expected", e.Name, len(data), e.bytes()))
		}
		const chunk = 32 << 20
		for off := 0; off < len(data); off += chunk {
			part := data[off:min(off+chunk, len(data))]
			if _, err := w.Write(part); err != nil {
				return fail(err)
			}
			if mapped {
				release(part)
			}
		}
		if after != nil {
			after(e)
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// release drops the pages of a memory-mapped view from this process's resident set once it
// has been read (they stay in the page cache; a later read faults them in again). data must lie
// in a read-only file mapping: on ordinary memory MADV_DONTNEED would zero it.
func release(data []byte) {
	if len(data) == 0 {
		return
	}
	page := uintptr(syscall.Getpagesize())
	skip := int((page - uintptr(unsafe.Pointer(&data[0]))%page) % page)
	if skip >= len(data) {
		return
	}
	whole := (len(data) - skip) / int(page) * int(page)
	if whole == 0 {
		return
	}
	_ = syscall.Madvise(data[skip:skip+whole], syscall.MADV_DONTNEED)
}
