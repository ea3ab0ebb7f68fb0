package bench

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/idefics2/idefics2/model"
)

//go:embed configs/*.json
var configFS embed.FS

// Sizes lists the named configurations, smallest first.
var Sizes = []string{"tiny", "small", "8b"}

// TinyConfigPath is the committed fixture whose config "tiny" names (relative to the module root).
const TinyConfigPath = "testdata/fixtures/model-tiny-basic/config.json"

// ConfigPath returns the config.json file for a size name ("tiny", "small", "8b") relative to
// the module root, or the argument itself when it is a path. scripts/bench_hf.py reads the same
// files, so both sides measure the same model.
func ConfigPath(size string) string {
	switch size {
	case "tiny":
		return TinyConfigPath
	case "small", "8b":
		return "bench/configs/" + size + ".json"
	}
	return size
}

// LoadConfig resolves a size name or a config.json path to its configuration and raw JSON.
func LoadConfig(size string) (model.Config, []byte, error) {
	var data []byte
	var err error
	switch size {
	case "small", "8b":
		data, err = configFS.ReadFile("configs/" + size + ".json")
	case "tiny":
		data, err = readFromModuleRoot(TinyConfigPath)
	default:
		if !strings.HasSuffix(size, ".json") {
			return model.Config{}, nil, fmt.Errorf("unknown size %q (want %s, or a config.json path)", size, strings.Join(Sizes, ", "))
		}
		data, err = os.ReadFile(size)
	}
	if err != nil {
		return model.Config{}, nil, err
	}
	c, err := model.ParseConfig(data)
	if err != nil {
		return c, nil, fmt.Errorf("%s: %w", ConfigPath(size), err)
	}
	return c, data, nil
}

// readFromModuleRoot reads rel from the directory holding go.mod, searched upwards from the
// working directory (so the command and tests find the fixture from any package directory).
func readFromModuleRoot(rel string) ([]byte, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return os.ReadFile(filepath.Join(dir, rel))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, fmt.Errorf("%s: no go.mod above the working directory; run from the repository or pass a config.json path", rel)
		}
		dir = parent
	}
}
