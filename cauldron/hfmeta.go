package cauldron

import (
	"encoding/json"

	"github.com/apache/arrow-go/v18/arrow"
)

// hfFeatures reads the feature types that HF datasets stores in a parquet file's schema
// metadata (key "huggingface": {"info": {"features": {...}}}); nil when absent.
func hfFeatures(sc *arrow.Schema) map[string]json.RawMessage {
	md := sc.Metadata()
	i := md.FindKey("huggingface")
	if i < 0 {
		return nil
	}
	var meta struct {
		Info struct {
			Features map[string]json.RawMessage `json:"features"`
		} `json:"info"`
	}
	if json.Unmarshal([]byte(md.Values()[i]), &meta) != nil {
		return nil
	}
	return meta.Info.Features
}

// isHFImage reports whether a feature is HF's Image, or a list of them (datasets 2.x writes
// {"_type": "Sequence", "feature": ...}, 3.x+ {"_type": "List", ...}; a plain JSON list is
// the older spelling of a list of structs).
func isHFImage(raw json.RawMessage) bool {
	var f struct {
		Type    string          `json:"_type"`
		Feature json.RawMessage `json:"feature"`
	}
	if json.Unmarshal(raw, &f) != nil {
		var list []json.RawMessage
		return json.Unmarshal(raw, &list) == nil && len(list) == 1 && isHFImage(list[0])
	}
	switch f.Type {
	case "Image":
		return true
	case "Sequence", "List", "LargeList":
		return f.Feature != nil && isHFImage(f.Feature)
	}
	return false
}

// hfImageColumn names the first column whose HF feature is an image (or list of images), so
// that a custom dataset with an image column under another name needs no configuration.
func hfImageColumn(sc *arrow.Schema) string {
	feats := hfFeatures(sc)
	for _, f := range sc.Fields() {
		if raw, ok := feats[f.Name]; ok && isHFImage(raw) {
			return f.Name
		}
	}
	return ""
}
