package pacompat

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
)

// fuzzConfig has one rule per way a value reaches the query: .LabelMatchers (several selectors),
// .LabelValuesByName inside double- and single-quoted strings and inside backtick raw strings, and an
// external rule.
const fuzzConfig = `
rules:
- seriesQuery: '{__name__="http_requests_total"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>,code!~"5.."}[2m])) by (<<.GroupBy>>)
- seriesQuery: '{__name__="nginx_total"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: >-
    sum by (<<range $i, $l := .GroupBySlice>><<if $i>>,<<end>><<$l>><<end>>) (rate(<<.Series>>{namespace="<<index .LabelValuesByName "namespace">>",
    pod=~'<<index .LabelValuesByName "pod">>',code=~"<<index .LabelValuesByName "code">>"}[1m]))
- seriesQuery: '{__name__="queue_length"}'
  resources: {template: <<.Resource>>}
  metricsQuery: max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>) / on (<<.GroupBy>>) count(up{<<.LabelMatchers>>}) by (<<.GroupBy>>)
- seriesQuery: '{__name__="raw_total"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: >-
    sum(<<.Series>>{namespace=` + "`" + `<<index .LabelValuesByName "namespace">>` + "`" + `,
    pod=~` + "`" + `<<index .LabelValuesByName "pod">>` + "`" + `,code=` + "`" + `<<index .LabelValuesByName "code">>` + "`" + `}) by (pod)
externalRules:
- seriesQuery: '{__name__="queue_depth"}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)
`

func fuzzMetrics(t testing.TB) []Metric {
	cfg, err := Parse([]byte(fuzzConfig))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	metrics := rules.Expand([]Series{
		{Query: `{__name__="http_requests_total"}`, Name: "http_requests_total", Labels: []string{"namespace", "pod", "code"}},
		{Query: `{__name__="nginx_total"}`, Name: "nginx_total", Labels: []string{"namespace", "pod", "code"}},
		{Query: `{__name__="queue_length"}`, Name: "queue_length", Labels: []string{"namespace", "deployment"}},
		{Query: `{__name__="raw_total"}`, Name: "raw_total", Labels: []string{"namespace", "pod", "code"}},
		{Query: `{__name__="queue_depth"}`, Name: "queue_depth", Labels: []string{"namespace", "queue"}},
	})
	var out []Metric
	for _, m := range metrics {
		if m.Namespaced {
			out = append(out, m)
		}
	}
	if len(out) != 5 {
		t.Fatalf("expected 5 namespaced metrics, got %d", len(out))
	}
	return out
}

// buildRaw builds like Build, then sets the selector's value on label code unvalidated, as a
// hostile client could if Kubernetes did not validate selector values.
func buildRaw(m *Metric, ns string, names []string, code string) (string, error) {
	req, err := k8slabels.NewRequirement("code", "=", []string{"x"})
	if err != nil {
		return "", err
	}
	r, err := m.request(naming.Selection{Namespace: ns, Names: names, Selector: k8slabels.NewSelector().Add(*req)})
	if err != nil {
		return "", err
	}
	for i := range r.parts {
		if r.parts[i].label == "code" {
			r.parts[i].value = code
			r.values["code"] = code
		}
	}
	return m.render(r)
}

// FuzzBuild proves that no namespace, object name or selector value changes a rendered query's
// structure: it parses, has the shape of the same query rendered for harmless values, and every
// value-carrying matcher selects exactly what the request asked for.
func FuzzBuild(f *testing.F) {
	for _, s := range [][3]string{
		{"shop", "web-1", "200"},
		{`a"b`, `c\d`, "e\nf"},
		{"x|y", ".*", `"} or vector(1) #`},
		{"ns'", "a)(b", "$1"},
		{"", "", ""},
		{"\x00", "\xff\xfe", "é"},
		{"`", "\u2028", `\x22`},
		{"a`) or vector(1) or up{x=`", "p`}) or vector(1) #", "c\\`"},
		{`'}) or up{a='`, `"}) or up{a="`, "\\"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	metrics := fuzzMetrics(f)
	f.Fuzz(func(t *testing.T, ns, name, code string) {
		if !utf8.ValidString(code) {
			return // selector values are validated before they get here
		}
		for i := range metrics {
			m := &metrics[i]
			nameSets := [][]string{nil, {name}, {name, name + "-2"}}
			if m.External {
				nameSets = [][]string{nil}
			}
			for _, names := range nameSets {
				benign := slices.Clone(names)
				for j := range benign {
					benign[j] = fmt.Sprintf("n%d", j)
				}
				baseNS := "ns"
				if ns == "" {
					baseNS = "" // no namespace: no namespace matcher
				}
				base, err := buildRaw(m, baseNS, benign, "c")
				if err != nil {
					continue // this shape does not apply (LabelValuesByName without names)
				}
				q, err := buildRaw(m, ns, names, code)
				if !utf8.ValidString(ns) || names != nil && !utf8.ValidString(name) {
					if err == nil {
						t.Fatalf("invalid UTF-8 %q/%q accepted", ns, name)
					}
					continue
				}
				if err != nil && m.rule.usesValues && strings.Contains(err.Error(), "renders invalid PromQL") {
					continue // a single raw value inside =~ is a regular expression; this one is not valid
				}
				if err != nil && strings.Contains(err.Error(), "raw string (`...`) cannot hold") {
					if !strings.Contains(ns+name+code, "`") {
						t.Fatalf("%s: refused without a backtick: %v", m.Name, err)
					}
					continue // a backtick cannot be written in a raw string: refused
				}
				if err != nil {
					t.Fatalf("%s: %v", m.Name, err)
				}
				baseExpr, err := parser.NewParser(parser.Options{}).ParseExpr(base)
				if err != nil {
					t.Fatal(err)
				}
				got, err := parser.NewParser(parser.Options{}).ParseExpr(q)
				if err != nil {
					t.Fatalf("built query does not parse: %v\n%s", err, q)
				}
				if s, want := testutil.QueryShape(got), testutil.QueryShape(baseExpr); s != want {
					t.Fatalf("structure changed:\n got %s\nwant %s\nquery %s", s, want, q)
				}
				checkValues(t, m, got, ns, names, code, q)
			}
		}
	})
}

// checkValues asserts every matcher on the namespace, name and selector labels selects exactly the requested values.
func checkValues(t *testing.T, m *Metric, expr parser.Expr, ns string, names []string, code, q string) {
	t.Helper()
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, lm := range vs.LabelMatchers {
			var want []string
			switch {
			case lm.Type == labels.MatchRegexp && m.rule.usesValues && (lm.Name == "code" || len(names) == 1):
				continue // a single raw .LabelValuesByName value inside =~ is a regular expression by design
			case lm.Name == m.NamespaceLabel() && ns != "":
				want = []string{ns}
			case lm.Name == m.NameLabel() && names != nil:
				want = names
			case lm.Name == "code" && lm.Type != labels.MatchNotRegexp:
				want = []string{code}
			default:
				continue
			}
			for _, w := range want {
				if !lm.Matches(w) {
					t.Fatalf("%s does not match %q\n%s", lm, w, q)
				}
			}
			for _, other := range []string{"", "x", ns + "x", "x" + ns, code + "\n", strings.Join(want, "|")} {
				if !slices.Contains(want, other) && lm.Matches(other) {
					t.Fatalf("%s also matches %q (wanted only %q)\n%s", lm, other, want, q)
				}
			}
		}
		return nil
	})
}

func TestBuildRejects(t *testing.T) {
	metrics := fuzzMetrics(t)
	var custom, external *Metric
	for i := range metrics {
		switch {
		case metrics[i].External:
			external = &metrics[i]
		case metrics[i].Name == "http_requests_per_second":
			custom = &metrics[i]
		}
	}
	sel := func(s string) k8slabels.Selector {
		t.Helper()
		out, err := k8slabels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		about string
		m     *Metric
		sel   naming.Selection
		want  string
	}{
		{"invalid UTF-8 namespace", custom, naming.Selection{Namespace: "\xff", Names: []string{"a"}}, "not valid UTF-8"},
		{"invalid UTF-8 name", custom, naming.Selection{Namespace: "ns", Names: []string{"a", "\xfe"}}, "not valid UTF-8"},
		{"empty names", custom, naming.Selection{Namespace: "ns", Names: []string{}}, "no object names requested"},
		{"a selector key that is no Prometheus label", custom, naming.Selection{Namespace: "ns", Names: []string{"a"}, Selector: sel("app.kubernetes.io/name=x")}, `selector key "app.kubernetes.io/name" is not a Prometheus label name`},
		{"less-than", custom, naming.Selection{Namespace: "ns", Names: []string{"a"}, Selector: sel("a<3")}, "operator not supported by prometheus"},
		{"names for an external metric", external, naming.Selection{Namespace: "ns", Names: []string{"a"}}, "external metric describes no objects"},
		{"a selector that selects nothing", external, naming.Selection{Namespace: "ns", Selector: k8slabels.Nothing()}, "selects nothing"},
		{"not from Expand", &Metric{Name: "x"}, naming.Selection{}, "not produced by Rules.Expand"},
	}
	for _, tc := range tests {
		_, err := tc.m.Build(tc.sel)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.about, err, tc.want)
		}
	}
}

func TestBuildNamespaceOnClusterScoped(t *testing.T) {
	cfg, err := Parse([]byte("rules:\n- seriesQuery: up\n  resources: {overrides: {node: {resource: node}}}\n  metricsQuery: max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)\n"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	ms := rules.Expand([]Series{{Query: "up", Name: "up", Labels: []string{"node", "job"}}})
	if len(ms) != 1 || ms[0].Namespaced || ms[0].NamespaceLabel() != "" || ms[0].NameLabel() != "node" {
		t.Fatalf("got %+v", ms)
	}
	if _, err := ms[0].Build(naming.Selection{Namespace: "x", Names: []string{"n1"}}); err == nil || !strings.Contains(err.Error(), "nodes are cluster-scoped") {
		t.Errorf("error %v", err)
	}
	q, err := ms[0].Build(naming.Selection{Names: []string{"n1"}})
	if err != nil || q != `max(up{node="n1"}) by (node)` {
		t.Errorf("got %q, %v", q, err)
	}
}

// TestExpandLastWins checks prometheus-adapter's map semantics: within a rule the last series wins,
// across rules the last rule wins, and repeated series do not change the outcome.
func TestExpandLastWins(t *testing.T) {
	cfg, err := Parse([]byte(`rules:
- seriesQuery: '{__name__=~"a_.*"}'
  resources: {overrides: {pod: {resource: pod}, namespace: {resource: namespace}}}
  name: {matches: "^a_(x|y)$", as: "m"}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})
- seriesQuery: '{__name__=~"b_.*"}'
  resources: {overrides: {pod: {resource: pod}, namespace: {resource: namespace}}}
  name: {as: "n"}
  metricsQuery: max(<<.Series>>{<<.LabelMatchers>>})
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	pod := []string{"pod", "namespace"}
	series := []Series{
		{Query: `{__name__=~"a_.*"}`, Name: "a_x", Labels: pod},
		{Query: `{__name__=~"a_.*"}`, Name: "a_y", Labels: pod},
		{Query: `{__name__=~"a_.*"}`, Name: "a_x", Labels: []string{"namespace", "pod"}},
		{Query: `{__name__=~"b_.*"}`, Name: "b_1", Labels: pod},
		{Query: `{__name__=~"b_.*"}`, Name: "b_2", Labels: pod},
		{Query: "unrelated", Name: "a_y", Labels: pod},
	}
	got := map[string]string{}
	for _, m := range rules.Expand(series) {
		got[m.Resource.GroupResource.String()+"/"+m.Name] = m.Series
	}
	want := map[string]string{"pods/m": "a_x", "namespaces/m": "a_x", "pods/n": "b_2", "namespaces/n": "b_2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if q := rules.SeriesQueries(); !slices.Equal(q, []string{`{__name__=~"a_.*"}`, `{__name__=~"b_.*"}`}) {
		t.Errorf("SeriesQueries %q", q)
	}
}

func TestExpandSkips(t *testing.T) {
	cfg, err := Parse([]byte(`rules:
- seriesQuery: '{namespace!=""}'
  resources: {template: <<.Resource>>}
  name: {matches: "^x_(.*)$"}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	q := `{namespace!=""}`
	got := rules.Expand([]Series{
		{Query: q, Name: "x_", Labels: []string{"namespace", "pod"}},              // expands to ""
		{Query: q, Name: "x_a.b", Labels: []string{"namespace", "pod"}},           // UTF-8 metric name
		{Query: q, Name: "x_ok", Labels: []string{"namespace", "container"}},      // container resolves to nothing
		{Query: q, Name: "y_ok", Labels: []string{"namespace", "pod"}},            // filtered by name.matches
		{Query: q, Name: "x_ok", Labels: []string{"__name__", "pod", "instance"}}, // __name__ is not a label here
	})
	var names []string
	for _, m := range got {
		names = append(names, fmt.Sprintf("%s/%s ns=%v", m.Resource.GroupResource, m.Name, m.Namespaced))
	}
	want := []string{"namespaces/ok ns=false", "pods/ok ns=true"}
	if !slices.Equal(names, want) {
		t.Errorf("got %q, want %q", names, want)
	}
}
