package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/idefics2/idefics2/config"
)

// DefaultModel is the model this toolkit is for.
const DefaultModel = "HuggingFaceM4/idefics2-8b"

// DefaultModelPatterns fetch what the Go program loads: configs, safetensors shards and their
// index, tokenizer files, the chat template. PyTorch .bin duplicates are left out.
var DefaultModelPatterns = []string{"*.json", "*.safetensors", "tokenizer.model", "*.jinja", "*.txt"}

// Request is one download, as the command line describes it.
type Request struct {
	Repo     Repo
	Include  []string
	Exclude  []string
	Shards   func(int) bool
	Out      string
	DryRun   bool
	Parallel int
}

const usage = `usage: idefics2-download <what> [flags]

  model [REPO]                  a model snapshot (default ` + DefaultModel + `)
  cauldron                      HuggingFaceM4/the_cauldron; --subsets docvqa,textvqa --shards 0-1
  eval docvqa|textvqa           lmms-lab/DocVQA (config DocVQA) or lmms-lab/textvqa; --split validation
  dataset REPO                  any dataset repository; --include/--exclude patterns

flags (after <what>): --out DIR (default hf/<owner>/<name>), --revision REV, --include PATTERNS,
--exclude PATTERNS (comma-separated fnmatch patterns, as huggingface_hub's allow_patterns),
--parallel N, --dry-run (print the URLs and sizes, download nothing).
Environment: HF_TOKEN for gated repositories, HF_ENDPOINT for a mirror.
`

// Config holds the download command's settings: its flags are shorthands for these keys, and
// --config / --set / IDEFICS2_DOWNLOAD_* set them too.
type Config struct {
	Download struct {
		Out      string `mapstructure:"out"`
		Revision string `mapstructure:"revision"`
		Include  string `mapstructure:"include"`
		Exclude  string `mapstructure:"exclude"`
		Subsets  string `mapstructure:"subsets"`
		Shards   string `mapstructure:"shards"`
		Split    string `mapstructure:"split" check:"nonempty"`
		DryRun   bool   `mapstructure:"dry_run"`
		Parallel int    `mapstructure:"parallel" check:"min=1"`
	} `mapstructure:"download"`
}

// ParseArgs turns a command line into a Request without touching the network.
func ParseArgs(args []string) (Request, error) {
	if len(args) == 0 {
		return Request{}, fmt.Errorf("nothing to download\n%s", usage)
	}
	what, args := args[0], args[1:]
	if what == "-h" || what == "--help" || what == "help" {
		what, args = "<what>", []string{"-h"} // the flags' usage, --config and --set included
	}
	var cfg Config
	cfg.Download.Split, cfg.Download.Parallel = "validation", 4
	fs := config.NewFlags("idefics2-download "+what, usage, &cfg)
	fs.Bind("out", "download.out", "output directory (default hf/<owner>/<name>)")
	fs.Bind("revision", "download.revision", "branch, tag or commit")
	fs.Bind("include", "download.include", "comma-separated fnmatch patterns of files to fetch")
	fs.Bind("exclude", "download.exclude", "comma-separated fnmatch patterns of files to skip")
	fs.Bind("subsets", "download.subsets", "cauldron: comma-separated subsets")
	fs.Bind("shards", "download.shards", "shard indices, e.g. 0-1 or 0,3")
	fs.Bind("split", "download.split", "eval: the split")
	fs.Bind("dry-run", "download.dry_run", "print the URLs and sizes, download nothing")
	fs.Bind("parallel", "download.parallel", "files fetched at once")
	pos, err := fs.ParseInterspersed(args, &cfg)
	if err != nil {
		if errors.Is(err, config.ErrHelp) {
			return Request{}, err
		}
		return Request{}, fmt.Errorf("%v\n%s", err, usage)
	}
	d := cfg.Download
	out, rev, include, exclude, subsets, shards, split, dry, parallel := &d.Out, &d.Revision, &d.Include, &d.Exclude, &d.Subsets, &d.Shards, &d.Split, &d.DryRun, &d.Parallel
	req := Request{DryRun: *dry, Parallel: *parallel, Exclude: splitList(*exclude)}
	switch what {
	case "model":
		id := DefaultModel
		if len(pos) > 0 {
			id = pos[0]
		}
		req.Repo, err = ParseRepo(id, Model)
		req.Include = DefaultModelPatterns
	case "cauldron":
		req.Repo = Repo{Kind: Dataset, ID: "HuggingFaceM4/the_cauldron"}
		req.Include = CauldronPatterns(splitList(*subsets))
	case "eval":
		if len(pos) == 0 {
			return Request{}, fmt.Errorf("eval: which set? docvqa or textvqa\n%s", usage)
		}
		switch pos[0] {
		case "docvqa":
			req.Repo = Repo{Kind: Dataset, ID: "lmms-lab/DocVQA"}
			req.Include = []string{"DocVQA/" + *split + "-*.parquet"}
		case "textvqa":
			req.Repo = Repo{Kind: Dataset, ID: "lmms-lab/textvqa"}
			req.Include = []string{"data/" + *split + "-*.parquet"}
		default:
			return Request{}, fmt.Errorf("eval: unknown set %q (docvqa, textvqa)", pos[0])
		}
	case "dataset":
		if len(pos) == 0 {
			return Request{}, fmt.Errorf("dataset: which repository?\n%s", usage)
		}
		req.Repo, err = ParseRepo(pos[0], Dataset)
	default:
		return Request{}, fmt.Errorf("unknown download %q\n%s", what, usage)
	}
	if err != nil {
		return Request{}, err
	}
	if *include != "" {
		req.Include = splitList(*include)
	}
	if *rev != "" {
		req.Repo.Revision = *rev
	}
	if req.Shards, err = ParseShards(*shards); err != nil {
		return Request{}, err
	}
	req.Out = *out
	if req.Out == "" {
		req.Out = filepath.Join("hf", filepath.FromSlash(req.Repo.ID))
	}
	return req, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Plan lists the repository and returns the files the request selects.
func (c *Client) Plan(ctx context.Context, req Request) ([]File, error) {
	all, err := c.ListFiles(ctx, req.Repo)
	if err != nil {
		return nil, err
	}
	sel, err := Select(all, req.Include, req.Exclude)
	if err != nil {
		return nil, err
	}
	sel = FilterShards(sel, req.Shards)
	if len(sel) == 0 {
		return nil, fmt.Errorf("%s: no files match %s (of %d listed)", req.Repo, strings.Join(req.Include, ", "), len(all))
	}
	return sel, nil
}

// Main is the download command: it returns the process exit code.
func Main(ctx context.Context, c *Client, args []string, stdout, stderr io.Writer) int {
	req, err := ParseArgs(args)
	if errors.Is(err, config.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	files, err := c.Plan(ctx, req)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	if req.DryRun {
		for _, f := range files {
			fmt.Fprintf(stdout, "%12d  %s\n", f.Size, ResolveURL(c.Endpoint, req.Repo, f.Path))
		}
		fmt.Fprintf(stdout, "%d files, %.2f GB from %s into %s\n", len(files), float64(total)/1e9, req.Repo, req.Out)
		return 0
	}
	fmt.Fprintf(stdout, "%d files, %.2f GB from %s into %s\n", len(files), float64(total)/1e9, req.Repo, req.Out)
	c.Progress = func(f File, err error) {
		if err != nil {
			fmt.Fprintf(stderr, "failed %s: %v\n", f.Path, err)
		} else {
			fmt.Fprintf(stdout, "ok %s\n", f.Path)
		}
	}
	if err := c.Snapshot(ctx, req.Repo, files, req.Out, req.Parallel); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
