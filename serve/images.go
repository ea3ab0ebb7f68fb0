package serve

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// imageSource turns an image URL of a request into the file's bytes: data: URLs always; http(s)
// only when the server allows it, with a timeout and a size cap; file: URLs (or plain paths)
// only inside a root directory given at startup. A URL that is not allowed is the client's
// error (400), never a read of something the operator did not expose.
type imageSource struct {
	AllowRemote   bool
	RemoteTimeout time.Duration
	MaxBytes      int64  // cap on one image's bytes, whatever its source
	Root          string // local images only below this directory; "" forbids them
	Client        *http.Client
}

func (s *imageSource) fetch(ctx context.Context, param, raw string) ([]byte, error) {
	switch {
	case strings.HasPrefix(raw, "data:"):
		return s.dataURL(param, raw)
	case strings.HasPrefix(raw, "http://"), strings.HasPrefix(raw, "https://"):
		return s.remote(ctx, param, raw)
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, badRequest(param, "image URL %q does not parse: %v", truncate(raw, 60), err)
		}
		return s.local(param, u.Path)
	case strings.Contains(raw, "://"):
		return nil, badRequest(param, "image URL scheme of %q is not supported (data:, http(s) when allowed, file: under the image root)", truncate(raw, 60))
	default:
		return s.local(param, raw)
	}
}

// dataURL decodes data:[<mediatype>][;base64],<data>.
func (s *imageSource) dataURL(param, raw string) ([]byte, error) {
	meta, payload, ok := strings.Cut(raw[len("data:"):], ",")
	if !ok {
		return nil, badRequest(param, "data URL has no comma before its data")
	}
	if !strings.HasSuffix(meta, ";base64") {
		return nil, badRequest(param, "data URL must be base64 (data:image/png;base64,...)")
	}
	if s.MaxBytes > 0 && int64(base64.StdEncoding.DecodedLen(len(payload))) > s.MaxBytes+3 {
		return nil, badRequest(param, "image is larger than the server's limit of %d bytes (serve.max_image_bytes)", s.MaxBytes)
	}
	b, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		// Some clients drop the padding or use the URL alphabet.
		if b2, err2 := base64.RawStdEncoding.DecodeString(strings.TrimRight(payload, "=")); err2 == nil {
			b, err = b2, nil
		} else if b3, err3 := base64.URLEncoding.DecodeString(payload); err3 == nil {
			b, err = b3, nil
		}
	}
	if err != nil {
		return nil, badRequest(param, "data URL is not valid base64: %v", err)
	}
	if s.MaxBytes > 0 && int64(len(b)) > s.MaxBytes {
		return nil, badRequest(param, "image is larger than the server's limit of %d bytes (serve.max_image_bytes)", s.MaxBytes)
	}
	return b, nil
}

func (s *imageSource) remote(ctx context.Context, param, raw string) ([]byte, error) {
	if !s.AllowRemote {
		return nil, badRequest(param, "http(s) image URLs are off on this server (start it with --allow-remote-images); send the image as a data: URL")
	}
	ctx, cancel := context.WithTimeout(ctx, s.RemoteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, badRequest(param, "image URL %q: %v", truncate(raw, 60), err)
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, badRequest(param, "fetching image %q: %v", truncate(raw, 60), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, badRequest(param, "fetching image %q: HTTP %s", truncate(raw, 60), resp.Status)
	}
	if s.MaxBytes > 0 && resp.ContentLength > s.MaxBytes {
		return nil, badRequest(param, "image %q is %d bytes, above the server's limit of %d (serve.max_image_bytes)", truncate(raw, 60), resp.ContentLength, s.MaxBytes)
	}
	b, err := readCapped(resp.Body, s.MaxBytes)
	if err != nil {
		return nil, badRequest(param, "fetching image %q: %v", truncate(raw, 60), err)
	}
	return b, nil
}

func (s *imageSource) local(param, path string) ([]byte, error) {
	if s.Root == "" {
		return nil, badRequest(param, "local image paths are off on this server (start it with --image-root DIR); send the image as a data: URL")
	}
	root, err := filepath.Abs(s.Root)
	if err != nil {
		return nil, err
	}
	full := path
	if !filepath.IsAbs(full) {
		full = filepath.Join(root, full)
	}
	// Symbolic links are resolved before the check, so a link inside the root cannot lead out.
	resolved, err := filepath.EvalSymlinks(filepath.Clean(full))
	if err != nil {
		return nil, badRequest(param, "image %q: no such file under the image root", truncate(path, 60))
	}
	rootResolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(rootResolved, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return nil, badRequest(param, "image %q is outside the image root", truncate(path, 60))
	}
	st, err := os.Stat(resolved)
	if err != nil || !st.Mode().IsRegular() {
		return nil, badRequest(param, "image %q is not a regular file", truncate(path, 60))
	}
	if s.MaxBytes > 0 && st.Size() > s.MaxBytes {
		return nil, badRequest(param, "image %q is %d bytes, above the server's limit of %d (serve.max_image_bytes)", truncate(path, 60), st.Size(), s.MaxBytes)
	}
	f, err := os.Open(resolved)
	if err != nil {
		return nil, badRequest(param, "image %q: %v", truncate(path, 60), err)
	}
	defer f.Close()
	return readCapped(f, s.MaxBytes)
}

var errTooBig = errors.New("larger than the server's image size limit (serve.max_image_bytes)")

// readCapped reads r up to max bytes (0: no cap), failing rather than truncating.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	if max <= 0 {
		return io.ReadAll(r)
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w", errTooBig)
	}
	return b, nil
}
