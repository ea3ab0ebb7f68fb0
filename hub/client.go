package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// DefaultEndpoint is the public hub; HF_ENDPOINT overrides it, as in huggingface_hub.
const DefaultEndpoint = "https://huggingface.co"

// Client talks to a hub.
type Client struct {
	Endpoint string
	Token    string // sent as a bearer token (gated repositories need one)
	HTTP     *http.Client
	// Retries is how many times a failed request or an interrupted download is retried,
	// resuming where it stopped.
	Retries int
	// Progress, when set, is called as each file completes or fails.
	Progress func(f File, err error)
}

// NewClient reads HF_ENDPOINT and HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) from the environment.
func NewClient() *Client {
	c := &Client{Endpoint: DefaultEndpoint, HTTP: &http.Client{}, Retries: 3}
	if e := os.Getenv("HF_ENDPOINT"); e != "" {
		c.Endpoint = e
	}
	c.Token = os.Getenv("HF_TOKEN")
	if c.Token == "" {
		c.Token = os.Getenv("HUGGING_FACE_HUB_TOKEN")
	}
	return c
}

func (c *Client) get(ctx context.Context, url string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.Token != "" {
		// net/http drops this header when the hub redirects to another host (its CDN), as it should.
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("User-Agent", "idefics2-download")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	return hc.Do(req)
}

// treeEntry is one item of the hub's tree API.
type treeEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
}

var nextLink = regexp.MustCompile(`<([^>]+)>;\s*rel="next"`)

// ListFiles lists every file of the repository, following the listing's pages.
func (c *Client) ListFiles(ctx context.Context, r Repo) ([]File, error) {
	var out []File
	for url := TreeURL(c.Endpoint, r); url != ""; {
		resp, err := c.get(ctx, url, nil)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", r, err)
		}
		var page []treeEntry
		err = decodeJSON(resp, &page)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", r, err)
		}
		for _, e := range page {
			if e.Type != "file" {
				continue
			}
			f := File{Path: e.Path, Size: e.Size}
			if e.LFS != nil {
				f.SHA256, f.Size = e.LFS.OID, e.LFS.Size
			}
			out = append(out, f)
		}
		url = ""
		if m := nextLink.FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			url = m[1]
		}
	}
	return out, nil
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	hint := ""
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		hint = " (a gated or private repository: set HF_TOKEN and accept its terms on the hub)"
	case http.StatusNotFound:
		hint = " (check the repository name, its kind (model/dataset) and the revision)"
	}
	return fmt.Errorf("%s %s%s: %s", resp.Request.URL, resp.Status, hint, strings.TrimSpace(string(body)))
}

// Download fetches one file into dir/<its path>. A complete file already there (same size)
// is kept; a partial one (<path>.incomplete) is resumed; the result is checked against the
// listing's size and sha256 before it takes its final name.
func (c *Client) Download(ctx context.Context, r Repo, f File, dir string) error {
	dest := filepath.Join(dir, filepath.FromSlash(f.Path))
	if st, err := os.Stat(dest); err == nil && st.Size() == f.Size {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	tmp := dest + ".incomplete"
	var err error
	for attempt := 0; attempt <= c.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err = c.fetch(ctx, r, f, tmp); err == nil || ctx.Err() != nil || errors.Is(err, errPermanent) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	if err := verify(tmp, f); err != nil {
		os.Remove(tmp) // a wrong file must not be resumed
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return os.Rename(tmp, dest)
}

var errPermanent = errors.New("not retried")

// fetch appends the rest of the file to tmp, asking for the missing byte range.
func (c *Client) fetch(ctx context.Context, r Repo, f File, tmp string) error {
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	have, err := out.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if f.Size > 0 && have == f.Size {
		return nil
	}
	h := http.Header{}
	if have > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := c.get(ctx, ResolveURL(c.Endpoint, r, f.Path), h)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent:
	case resp.StatusCode == http.StatusOK:
		// The server ignored the range: start over.
		if err := out.Truncate(0); err != nil {
			return err
		}
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			return err
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return out.Truncate(0) // the partial file is longer than the file: retry from scratch
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return statusError(resp)
	default:
		return fmt.Errorf("%w: %v", errPermanent, statusError(resp))
	}
	_, err = io.Copy(out, resp.Body)
	return err
}

func verify(path string, f File) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return err
	}
	if f.Size > 0 && n != f.Size {
		return fmt.Errorf("downloaded %d bytes, the hub lists %d", n, f.Size)
	}
	if f.SHA256 != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
			return fmt.Errorf("sha256 %s, the hub lists %s", got, f.SHA256)
		}
	}
	return nil
}

// Snapshot downloads the selected files of a repository into dir, `parallel` at a time, and
// returns the first error after letting the others finish (what is complete stays).
func (c *Client) Snapshot(ctx context.Context, r Repo, files []File, dir string, parallel int) error {
	if parallel <= 0 {
		parallel = 4
	}
	sem := make(chan struct{}, parallel)
	errs := make(chan error, len(files))
	for _, f := range files {
		sem <- struct{}{}
		go func(f File) {
			defer func() { <-sem }()
			err := c.Download(ctx, r, f, dir)
			if c.Progress != nil {
				c.Progress(f, err)
			}
			errs <- err
		}(f)
	}
	for range parallel {
		sem <- struct{}{}
	}
	close(errs)
	var first error
	n := 0
	for err := range errs {
		if err != nil {
			n++
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		return fmt.Errorf("%d of %d files failed; first: %w (run again to resume)", n, len(files), first)
	}
	return nil
}
