package model_test

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/idefics2/idefics2/internal/fixtures"
	"github.com/idefics2/idefics2/model"
)

func backendOf(b any) backends.Backend { return b.(backends.Backend) }

func inputsFromFixture(raw map[string]fixtures.Array) (model.Inputs, error) {
	return fixtures.ModelInputs(raw)
}
