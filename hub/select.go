package hub

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// File is one file of a repository listing.
type File struct {
	Path   string
	Size   int64
	SHA256 string // for LFS files (the large ones: weights, parquet shards); empty otherwise
}

// Select keeps the files matching any include pattern (all when none) and no exclude pattern.
// Patterns follow Python's fnmatch, as huggingface_hub's allow_patterns do: "*" crosses "/"
// too, so "*.json" matches "a/b.json".
func Select(files []File, include, exclude []string) ([]File, error) {
	inc, err := compileAll(include)
	if err != nil {
		return nil, err
	}
	exc, err := compileAll(exclude)
	if err != nil {
		return nil, err
	}
	var out []File
	for _, f := range files {
		if (len(inc) == 0 || anyMatch(inc, f.Path)) && !anyMatch(exc, f.Path) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func anyMatch(res []*regexp.Regexp, p string) bool {
	for _, re := range res {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}

func compileAll(pats []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(pats))
	for _, p := range pats {
		re, err := fnmatch(p)
		if err != nil {
			return nil, err
		}
		out = append(out, re)
	}
	return out, nil
}

// fnmatch translates a shell pattern (*, ?, [...], [!...]) into an anchored regexp.
func fnmatch(pat string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := strings.IndexByte(pat[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := pat[i+1 : i+1+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("bad pattern %q: %w", pat, err)
	}
	return re, nil
}

// CauldronPatterns selects subsets of HuggingFaceM4/the_cauldron: each subset's train shards,
// or every subset's with none given.
func CauldronPatterns(subsets []string) []string {
	if len(subsets) == 0 {
		return []string{"*/train-*.parquet"}
	}
	out := make([]string, len(subsets))
	for i, s := range subsets {
		out[i] = s + "/train-*.parquet"
	}
	return out
}

var shardRE = regexp.MustCompile(`-(\d{5})-of-(\d{5})(?:-[0-9a-f]+)?\.parquet$`)

// ShardIndex reads the shard number from a hub shard name
// (train-00003-of-00012-<hash>.parquet → 3); false for other names.
func ShardIndex(name string) (int, bool) {
	m := shardRE.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(m[1])
	return n, true
}

// ParseShards reads a shard selection such as "0", "0-3" or "0-1,5"; empty means all.
func ParseShards(s string) (func(int) bool, error) {
	if strings.TrimSpace(s) == "" {
		return func(int) bool { return true }, nil
	}
	type span struct{ lo, hi int }
	var spans []span
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("shards %q: %q is not a shard number or range", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("shards %q: %q is not a range lo-hi", s, part)
			}
		}
		spans = append(spans, span{a, b})
	}
	return func(n int) bool {
		for _, sp := range spans {
			if n >= sp.lo && n <= sp.hi {
				return true
			}
		}
		return false
	}, nil
}

// FilterShards keeps sharded parquet files whose shard number is selected (and files that
// are not shards at all, such as a README).
func FilterShards(files []File, keep func(int) bool) []File {
	var out []File
	for _, f := range files {
		if n, ok := ShardIndex(f.Path); !ok || keep(n) {
			out = append(out, f)
		}
	}
	return out
}
