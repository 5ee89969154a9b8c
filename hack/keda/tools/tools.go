//go:build tools

// Package tools keeps KEDA's commands in the wrapper module's graph for go mod tidy.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
