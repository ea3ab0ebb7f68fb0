//go:build tools

// This file pins the owner's chosen dependencies in go.mod before every package imports them.
package backend

import (
	_ "github.com/apache/arrow-go/v18/parquet/pqarrow"
	_ "github.com/daulet/tokenizers"
	_ "github.com/nlpodyssey/safetensors"
	_ "github.com/spf13/viper"
)
