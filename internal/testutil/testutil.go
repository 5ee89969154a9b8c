// Package testutil holds helpers the project's tests share: golden files and PromQL shapes.
package testutil

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// Golden compares got with the file at path; with update it rewrites the file first.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// QueryShape summarises a parsed query without its label values: the node types in order,
// and each vector selector's name with its matchers' names and types (sorted, as printed).
func QueryShape(expr parser.Expr) string {
	var b strings.Builder
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		fmt.Fprintf(&b, "%T;", n)
		if vs, ok := n.(*parser.VectorSelector); ok {
			var ms []string
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					ms = append(ms, m.Name+m.Type.String())
				}
			}
			slices.Sort(ms)
			fmt.Fprintf(&b, "%s{%s}", vs.Name, strings.Join(ms, ","))
		}
		return nil
	})
	return b.String()
}
