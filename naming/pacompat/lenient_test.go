package pacompat

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
)

// runLenient renders a case of testdata/pacompat/lenient as CompileLenient serves it: what strict
// Compile says, the unusable rules, the metrics discovery lists, and each request's query or error
// with the status the adapter answers it with.
func runLenient(t *testing.T, tc *testCase) string {
	t.Helper()
	var b strings.Builder
	cfg, err := Parse([]byte(tc.Config))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	resolver := tc.resolver()
	if _, err := Compile(cfg, resolver); err == nil {
		t.Error("strict Compile accepts the case; a lenient case needs an unusable rule")
	} else {
		b.WriteString("== strict\n" + err.Error() + "\n")
	}
	rules, err := CompileLenient(cfg, resolver)
	if err != nil {
		return b.String() + "== config error\n" + err.Error() + "\n"
	}
	b.WriteString("== unusable\n")
	for _, u := range rules.Unusable {
		b.WriteString(u.String() + "\n")
	}
	metrics := rules.Expand(tc.series())
	lines := make([]string, len(metrics))
	for i := range metrics {
		lines[i] = metricLine(&metrics[i])
		if metrics[i].rule.unusable != nil {
			lines[i] += " (unusable rule)"
		}
	}
	sort.Strings(lines)
	b.WriteString("== metrics\n" + strings.Join(lines, "\n") + "\n== requests\n")
	for _, r := range tc.Requests {
		fmt.Fprintf(&b, "-- %s\n", r.About)
		m, err := find(metrics, resolver, r)
		if err != nil {
			b.WriteString("error 404: not served\n")
			continue
		}
		sel, err := k8slabels.Parse(r.Selector)
		if err != nil {
			t.Fatal(err)
		}
		q, err := m.Build(naming.Selection{Namespace: r.Namespace, Names: r.Names, Selector: sel})
		var rf *naming.RuleFault
		switch {
		case errors.As(err, &rf):
			fmt.Fprintf(&b, "error %d: %v\n", rf.Code, err)
		case err != nil:
			fmt.Fprintf(&b, "error 400: %v\n", err)
		default:
			b.WriteString(q + "\n")
		}
	}
	return b.String()
}

// TestLenientGolden: a config with unusable rules starts; every usable rule serves, each unusable
// one is reported, and requests for its metrics fail with prometheus-adapter's status class.
func TestLenientGolden(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(testdata, "lenient", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases in %s/lenient: %v", testdata, err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			got := runLenient(t, loadCase(t, path))
			testutil.Golden(t, strings.TrimSuffix(path, ".yaml")+".golden", got, *update)
		})
	}
}

func TestLenientStatuses(t *testing.T) {
	cfg, err := Parse([]byte(`rules:
- seriesQuery: '{__name__="a",namespace!="",pod!=""}'
  resources: {template: <<.Resource>>}
- seriesQuery: '{__name__="b",namespace!="",pod!=""}'
  resources: {template: <<.Resource>>}
  metricsQuery: 'b{<<.LabelMatchers>>} by'
- seriesQuery: '{__name__="c",namespace!="",pod!=""}'
  resources: {template: <<.Resource>>}
  metricsQuery: '<<.Series>>{<<.Nope>>}'
- seriesQuery: '{__name__="d",namespace!="",pod!=""}'
  resources: {template: <<.Resource>>}
  name: {matches: '('}
  metricsQuery: d
externalRules:
- seriesQuery: '{__name__="e"}'
  resources: {namespaced: false}
- seriesQuery: '{__name__="f"}'
  resources: {namespaced: false}
  metricsQuery: 'f{<<.LabelMatchers>>}'
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := CompileLenient(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range rules.Unusable {
		got = append(got, fmt.Sprintf("%s discovers=%v", u.Rule(), u.Discovers))
	}
	if want := "rules[0] discovers=true rules[1] discovers=true rules[2] discovers=true rules[3] discovers=false externalRules[0] discovers=true"; strings.Join(got, " ") != want {
		t.Errorf("unusable: %s\nwant      %s", strings.Join(got, " "), want)
	}
	metrics := rules.Expand([]Series{
		{Query: `{__name__="a",namespace!="",pod!=""}`, Name: "a", Labels: []string{"namespace", "pod"}},
		{Query: `{__name__="b",namespace!="",pod!=""}`, Name: "b", Labels: []string{"namespace", "pod"}},
		{Query: `{__name__="c",namespace!="",pod!=""}`, Name: "c", Labels: []string{"namespace", "pod"}},
		{Query: `{__name__="e"}`, Name: "e", Labels: []string{"queue"}},
		{Query: `{__name__="f"}`, Name: "f", Labels: []string{"queue"}},
	})
	codes := map[string]int{}
	for i := range metrics {
		m := &metrics[i]
		if !m.External && m.Resource.GroupResource.Resource != "pods" {
			continue
		}
		sel := naming.Selection{Namespace: "ns", Names: []string{"p"}}
		if m.External {
			sel = naming.Selection{}
		}
		_, err := m.Build(sel)
		var rf *naming.RuleFault
		switch {
		case err == nil:
			codes[m.Name] = 200
		case errors.As(err, &rf):
			codes[m.Name] = rf.Code
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", m.Name)) || !strings.Contains(err.Error(), "[") {
				t.Errorf("%s: %v does not name the metric and the rule", m.Name, err)
			}
		default:
			codes[m.Name] = 400
		}
	}
	want := map[string]int{
		"a": http.StatusNotFound,            // empty query: prometheus-adapter's metric-not-found
		"b": http.StatusInternalServerError, // Prometheus refuses what it renders
		"c": http.StatusNotFound,            // the template fails to execute
		"e": http.StatusInternalServerError, // external: prometheus-adapter answers 500
		"f": 200,
	}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", codes, want)
	}

	// Strict Compile refuses the same config, naming every unusable rule.
	_, err = Compile(cfg, naming.BuiltinResources())
	for _, w := range []string{"rules[0]", "rules[1]", "rules[2]", "rules[3]", "externalRules[0]"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("strict error %v lacks %s", err, w)
		}
	}
}

func TestLoadLenient(t *testing.T) {
	data := []byte("rules:\n- seriesQuery: '{__name__=\"a\",pod!=\"\"}'\n  resources: {template: <<.Resource>>}\n- seriesQuery: '{__name__=\"b\",pod!=\"\"}'\n  resources: {template: <<.Resource>>}\n  metricsQuery: b{<<.LabelMatchers>>}\n")
	if _, _, err := Load(data, naming.BuiltinResources()); err == nil {
		t.Error("Load accepts a rule without metricsQuery")
	}
	rules, _, err := LoadLenient(data, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	u := UnusableRules(rules)
	if len(u) != 1 || u[0].Rule() != "rules[0]" || !strings.Contains(u[0].String(), "metricsQuery: required") {
		t.Errorf("unusable %v", u)
	}
	if len(rules.Series.SeriesQueries()) != 2 {
		t.Errorf("series queries %q: the unusable rule's discovery is kept", rules.Series.SeriesQueries())
	}
	if UnusableRules(&naming.Rules{}) != nil || UnusableRules(nil) != nil {
		t.Error("UnusableRules of other rule sets")
	}
}
