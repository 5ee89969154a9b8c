package naming

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

func mustSelector(t testing.TB, s string) k8slabels.Selector {
	t.Helper()
	sel, err := k8slabels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// TestBuildGolden builds the PromQL of the README's examples for the requests an HPA and kubectl make.
func TestBuildGolden(t *testing.T) {
	rules := compileFile(t, "../testdata/rules/examples.yaml")
	byName := map[string]*Metric{}
	for _, m := range rules.Metrics {
		byName[m.Name] = m
	}
	orders, _ := rules.Templates[0].Expand("myapp_orders_total")
	byName[orders.Name] = orders

	cases := []struct {
		metric string
		sel    Selection
		about  string
	}{
		{"elu_utilization", Selection{Namespace: "shop"}, "pods/* with no selector: namespace only"},
		{"elu_utilization", Selection{Namespace: "shop", Names: []string{"web-1"}}, "one pod by name"},
		{"elu_utilization", Selection{Namespace: "shop", Names: []string{"web-2", "web-1", "web-1"}}, "selected pods, sorted and deduplicated"},
		{"elu_utilization", Selection{Namespace: "shop", Names: []string{"a.b", "c+d"}}, "regex metacharacters in names are escaped"},
		{"http_requests_per_second", Selection{Namespace: "shop", Names: []string{"web-1"}, Selector: mustSelector(t, "code=200,method in (GET,HEAD)")}, "metricLabelSelector"},
		{"service_requests_per_second", Selection{Namespace: "shop", Names: []string{"frontend"}}, "Object metric on a Service"},
		{"queue_messages_ready", Selection{Namespace: "shop", Selector: mustSelector(t, "queue=orders")}, "External metric with a selector"},
		{"queue_messages_ready", Selection{Namespace: "shop", Selector: mustSelector(t, "queue notin (a,b),!tmp,region")}, "External metric, notin / !exists / exists"},
		{"myapp_orders_per_second", Selection{Namespace: "shop", Names: []string{"p"}}, "discovered metric"},
		{"elu_utilization", Selection{Namespace: `we"ird\ns`, Names: []string{"x\ny"}}, "quotes, backslashes, newlines stay inside strings"},
	}
	var b strings.Builder
	for _, c := range cases {
		m := byName[c.metric]
		if m == nil {
			t.Fatalf("no metric %q", c.metric)
		}
		q, err := m.Build(c.sel)
		if err != nil {
			t.Fatalf("%s: %v", c.about, err)
		}
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(q); err != nil {
			t.Errorf("%s: built query does not parse: %v\n%s", c.about, err, q)
		}
		fmt.Fprintf(&b, "# %s\n# metric=%s namespace=%q names=%q selector=%v\n%s\n\n", c.about, c.metric, c.sel.Namespace, c.sel.Names, c.sel.Selector, q)
	}
	testutil.Golden(t, "../testdata/golden/naming_queries.golden", b.String(), *update)
}

func TestInjectOnlyNamedSeries(t *testing.T) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(`sum by (pod) (rate(a[1m])) / on() group_left sum(b)`)
	if err != nil {
		t.Fatal(err)
	}
	Inject(expr, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "namespace", "x")}, []string{"a"})
	want := `sum by (pod) (rate(a{namespace="x"}[1m])) / on () group_left () sum(b)`
	if got := expr.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestSelectorMatchers(t *testing.T) {
	tests := []struct {
		sel     string
		want    string
		wantErr string
	}{
		{sel: "", want: ""},
		{sel: "a=b", want: `a="b"`},
		{sel: "a==b", want: `a="b"`},
		{sel: "a!=b", want: `a!="b"`},
		{sel: "a in (x,y.z)", want: `a=~"x|y\\.z"`},
		{sel: "a notin (x)", want: `a!~"x"`},
		{sel: "a", want: `a!=""`},
		{sel: "!a", want: `a=""`},
		{sel: "a>3", wantErr: `operator "gt" on "a" is not supported`},
		{sel: "app.kubernetes.io/name=x", wantErr: "not a valid Prometheus label name"},
	}
	for _, tc := range tests {
		ms, err := SelectorMatchers(mustSelector(t, tc.sel))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.sel, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.sel, err)
			continue
		}
		var parts []string
		for _, m := range ms {
			parts = append(parts, m.String())
		}
		if got := strings.Join(parts, ","); got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.sel, got, tc.want)
		}
	}
}

// FuzzBuild proves that no namespace, object name or selector value changes a query's structure:
// the built query parses, has the shape of the rule's query plus the injected matchers, and every
// injected matcher matches exactly the value the request gave.
func FuzzBuild(f *testing.F) {
	for _, s := range [][3]string{
		{"shop", "web-1", "GET"},
		{`a"b`, `c\d`, "e\nf"},
		{"x|y", ".*", `"} or vector(1) #`},
		{"ns", "a)(b", "$1"},
		{"", "", ""},
		{"\x00", "\xff\xfe", "é"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	rules := compileFile(f, "../testdata/rules/examples.yaml")
	f.Fuzz(func(t *testing.T, ns, name, val string) {
		for _, m := range rules.Metrics {
			base, err := parser.NewParser(parser.Options{}).ParseExpr(m.Query())
			if err != nil {
				t.Fatal(err)
			}
			sel := Selection{Namespace: ns, Names: []string{name, name + "-2"}}
			req, err := k8slabels.NewRequirement("code", "=", []string{"x"})
			if err != nil {
				t.Fatal(err)
			}
			sel.Selector = k8slabels.NewSelector().Add(*req)
			ms, err := m.Matchers(sel)
			if !utf8.ValidString(name) || !utf8.ValidString(ns) {
				if err == nil {
					t.Fatalf("invalid UTF-8 %q/%q accepted", ns, name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The escaped alternation selects exactly the requested names.
			for _, lm := range ms {
				if lm.Name != m.NameLabel {
					continue
				}
				for _, probe := range []struct {
					value string
					want  bool
				}{{name, true}, {name + "-2", true}, {name + "-3", false}, {"x" + name, false}, {name + "\n", false}, {strings.ReplaceAll(name, ".", "x"), !strings.Contains(name, ".")}} {
					if got := lm.Matches(probe.value); got != probe.want {
						t.Fatalf("%s matches %q: %v, want %v", lm, probe.value, got, probe.want)
					}
				}
			}
			// The selector value is set after validation, as a hostile client could send it.
			for _, lm := range ms {
				if lm.Name == "code" {
					lm.Value = val
				}
			}
			Inject(base, ms, m.inject)
			want := testutil.QueryShape(base)
			q := base.String()
			got, err := parser.NewParser(parser.Options{}).ParseExpr(q)
			if err != nil && (!utf8.ValidString(val) || strings.ContainsRune(val, utf8.RuneError)) {
				// Prometheus's lexer refuses invalid UTF-8 and U+FFFD (its own mark of it) in a string, so the
				// query is refused whole and nothing is read. No request brings one: Kubernetes' selector parsing
				// refuses such a label value, which is checked here too.
				if _, rerr := k8slabels.NewRequirement("code", "=", []string{val}); rerr == nil {
					t.Fatalf("a selector value %q Prometheus cannot parse was accepted", val)
				}
				return
			}
			if err != nil {
				t.Fatalf("built query does not parse: %v\n%s", err, q)
			}
			if s := testutil.QueryShape(got); s != want {
				t.Fatalf("structure changed:\n got %s\nwant %s\nquery %s", s, want, q)
			}
			checkValues(t, got, ms)
		}
	})
}

// checkValues asserts every vector selector carries the injected matchers with their exact values.
func checkValues(t *testing.T, expr parser.Expr, ms []*labels.Matcher) {
	t.Helper()
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, m := range ms {
			if !slices.ContainsFunc(vs.LabelMatchers, func(g *labels.Matcher) bool {
				return g.Name == m.Name && g.Type == m.Type && g.Value == m.Value
			}) {
				t.Fatalf("%s lost matcher %s: %v", vs.Name, m, vs.LabelMatchers)
			}
		}
		return nil
	})
}
