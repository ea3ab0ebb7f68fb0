package model

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// ParseDType reads the dtype names every command accepts: float32 (f32, fp32) and bfloat16
// (bf16), case-insensitive; "" is float32.
func ParseDType(s string) (dtypes.DType, error) {
	switch strings.ToLower(s) {
	case "", "float32", "f32", "fp32":
		return dtypes.Float32, nil
	case "bfloat16", "bf16":
		return dtypes.BFloat16, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("dtype %q: use float32 or bfloat16", s)
}
