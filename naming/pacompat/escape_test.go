package pacompat

import (
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/promql-adapter/promql-adapter/naming"
)

// TestLabelValuesStringForms checks that a .LabelValuesByName value keeps to the string the
// template puts it in, whichever of PromQL's three string forms that is, or is refused.
func TestLabelValuesStringForms(t *testing.T) {
	tests := []struct {
		about, query, pod string
		want              string // the rendered query, or
		err               string // the error
	}{
		{"double-quoted", `sum(x{pod="<<index .LabelValuesByName "pod">>"})`, `a"b\c`,
			`sum(x{pod="a\x22b\\c"})`, ""},
		{"single-quoted", `sum(x{pod='<<index .LabelValuesByName "pod">>'})`, `a'b`,
			`sum(x{pod='a\x27b'})`, ""},
		{"raw string keeps backslashes", "sum(x{pod=`<<index .LabelValuesByName \"pod\">>`})", `a\b"c'`,
			"sum(x{pod=`a\\b\"c'`})", ""},
		{"raw string refuses a backtick", "sum(x{pod=`<<index .LabelValuesByName \"pod\">>`})", "a`) or vector(1) or x{pod=`",
			"", "raw string (`...`) cannot hold"},
		{"raw and quoted: a value that differs escaped", "x{pod=`<<index .LabelValuesByName \"pod\">>`} or x{pod=\"<<index .LabelValuesByName \"pod\">>\"}", `a\b`,
			"", "both in a quoted string and raw"},
		{"raw and quoted: a plain value", "x{pod=`<<index .LabelValuesByName \"pod\">>`} or x{pod=\"<<index .LabelValuesByName \"pod\">>\"}", `web-1`,
			"x{pod=`web-1`} or x{pod=\"web-1\"}", ""},
		{"comment", "sum(x) # <<index .LabelValuesByName \"pod\">>", "a\nor vector(1)",
			"", "line break"},
	}
	for _, tc := range tests {
		t.Run(tc.about, func(t *testing.T) {
			cfg, err := Parse([]byte("rules:\n- seriesQuery: '{__name__=\"x\"}'\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  metricsQuery: '" +
				strings.ReplaceAll(tc.query, "'", "''") + "'\n"))
			if err != nil {
				t.Fatal(err)
			}
			rules, err := Compile(cfg, naming.BuiltinResources())
			if err != nil {
				t.Fatal(err)
			}
			var m *Metric
			for _, e := range rules.Expand([]Series{{Query: `{__name__="x"}`, Name: "x", Labels: []string{"namespace", "pod"}}}) {
				if e.Resource.GroupResource.Resource == "pods" {
					m = &e
				}
			}
			if m == nil {
				t.Fatal("no pod metric")
			}
			r, err := m.request(naming.Selection{Names: []string{"p"}})
			if err != nil {
				t.Fatal(err)
			}
			r.values["pod"] = tc.pod // as a hostile client could, were names not validated
			q, err := m.render(r)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error %q", q, err, tc.err)
				}
				return
			}
			if err != nil || q != tc.want {
				t.Fatalf("got %q, %v; want %q", q, err, tc.want)
			}
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(q); err != nil {
				t.Fatal(err)
			}
		})
	}
}
