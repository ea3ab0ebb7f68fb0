package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"unsafe"

	"github.com/nlpodyssey/safetensors"
)

// Checkpoint is a set of memory-mapped safetensors files (one file, or the shards listed by
// model.safetensors.index.json). Mapping instead of reading keeps the host at one copy of the
// weights: pages are read from the page cache as each tensor is converted, and can be dropped.
type Checkpoint struct {
	Dir     string
	tensors map[string]tensorRef
	maps    [][]byte
}

type tensorRef struct {
	file   string
	view   safetensors.TensorView
	mapped []byte // the whole mapping of file
}

// OpenCheckpoint maps dir/model.safetensors, or the shards named by dir/model.safetensors.index.json.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	ck := &Checkpoint{Dir: dir, tensors: map[string]tensorRef{}}
	files := []string{"model.safetensors"}
	if idx, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json")); err == nil {
		var index struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(idx, &index); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "model.safetensors.index.json"), err)
		}
		seen := map[string]bool{}
		files = files[:0]
		for _, f := range index.WeightMap {
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
		sort.Strings(files)
	}
	for _, f := range files {
		if err := ck.mapFile(filepath.Join(dir, f)); err != nil {
			ck.Close()
			return nil, err
		}
	}
	return ck, nil
}

// OpenSafetensors maps a single safetensors file.
func OpenSafetensors(path string) (*Checkpoint, error) {
	ck := &Checkpoint{Dir: filepath.Dir(path), tensors: map[string]tensorRef{}}
	if err := ck.mapFile(path); err != nil {
		ck.Close() // a rejected file stays mapped otherwise (--resume tries the next checkpoint)
		return nil, err
	}
	return ck, nil
}

func (ck *Checkpoint) mapFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w (expected model.safetensors or model.safetensors.index.json with its shards)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < 8 {
		return fmt.Errorf("%s: %d bytes is too short for a safetensors file", path, st.Size())
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("%s: mmap: %w", path, err)
	}
	ck.maps = append(ck.maps, data)
	parsed, err := parseSafetensors(path, data)
	if err != nil {
		return err
	}
	for _, nt := range parsed.Tensors() {
		if prev, dup := ck.tensors[nt.Name]; dup {
			return fmt.Errorf("%s: tensor %s also in %s", path, nt.Name, prev.file)
		}
		ck.tensors[nt.Name] = tensorRef{file: path, view: nt.TensorView, mapped: data}
	}
	return nil
}

// Names lists the tensor names, sorted.
func (ck *Checkpoint) Names() []string {
	names := make([]string, 0, len(ck.tensors))
	for n := range ck.tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Tensor returns the raw view of a tensor and the file holding it.
func (ck *Checkpoint) Tensor(name string) (safetensors.TensorView, string, bool) {
	r, ok := ck.tensors[name]
	return r.view, r.file, ok
}

// Release tells the kernel that the pages of tensor name are no longer needed, so that they
// leave this process's resident set once converted: loading then peaks at the converted weights
// plus one tensor, not twice the checkpoint.
func (ck *Checkpoint) Release(name string) {
	r, ok := ck.tensors[name]
	if !ok || len(r.view.Data()) == 0 || r.mapped == nil {
		return
	}
	// Offsets within the mapping, which starts on a page boundary.
	off := int(uintptr(unsafe.Pointer(&r.view.Data()[0])) - uintptr(unsafe.Pointer(&r.mapped[0])))
	page := syscall.Getpagesize()
	start := (off + page - 1) / page * page
	end := (off + len(r.view.Data())) / page * page
	if end > start {
		_ = syscall.Madvise(r.mapped[start:end], syscall.MADV_DONTNEED)
	}
}

// Close unmaps the files; views obtained before are invalid afterwards.
func (ck *Checkpoint) Close() error {
	for _, m := range ck.maps {
		_ = syscall.Munmap(m)
	}
	ck.maps, ck.tensors = nil, nil
	return nil
}
