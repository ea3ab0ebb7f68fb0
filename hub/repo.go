package hub

import (
	"fmt"
	"net/url"
	"strings"
)

// Kind is a repository kind; it decides the URL prefixes.
type Kind string

const (
	Model   Kind = "model"
	Dataset Kind = "dataset"
)

// Repo is one repository at one revision (branch, tag or commit).
type Repo struct {
	Kind     Kind
	ID       string // owner/name
	Revision string // empty means "main"
}

// ParseRepo reads "owner/name", "datasets/owner/name" or "models/owner/name", optionally
// followed by "@revision".
func ParseRepo(s string, def Kind) (Repo, error) {
	r := Repo{Kind: def}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		s, r.Revision = s[:at], s[at+1:]
	}
	switch {
	case strings.HasPrefix(s, "datasets/"):
		r.Kind, s = Dataset, strings.TrimPrefix(s, "datasets/")
	case strings.HasPrefix(s, "models/"):
		r.Kind, s = Model, strings.TrimPrefix(s, "models/")
	}
	parts := strings.Split(s, "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return Repo{}, fmt.Errorf("repository %q: want owner/name (optionally datasets/ first, @revision last)", s)
	}
	r.ID = s
	return r, nil
}

func (r Repo) rev() string {
	if r.Revision == "" {
		return "main"
	}
	return r.Revision
}

func (r Repo) String() string {
	s := r.ID
	if r.Kind == Dataset {
		s = "datasets/" + s
	}
	return s + "@" + r.rev()
}

// escapePath escapes each segment of a slash-separated path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// TreeURL is the hub API listing of a repository's files, recursive, with LFS metadata
// (size and sha256 of large files). The listing is paginated through Link headers.
func TreeURL(endpoint string, r Repo) string {
	return fmt.Sprintf("%s/api/%ss/%s/tree/%s?recursive=true&expand=false",
		strings.TrimRight(endpoint, "/"), r.Kind, r.ID, url.PathEscape(r.rev()))
}

// ResolveURL is where a file's content is served (the hub redirects large files to its CDN).
// A revision such as refs/convert/parquet is escaped into one segment, as the hub expects.
func ResolveURL(endpoint string, r Repo, file string) string {
	prefix := ""
	if r.Kind == Dataset {
		prefix = "datasets/"
	}
	return fmt.Sprintf("%s/%s%s/resolve/%s/%s", strings.TrimRight(endpoint, "/"), prefix, r.ID,
		url.PathEscape(r.rev()), escapePath(file))
}
