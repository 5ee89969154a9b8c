package pacompat

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testdata = "../../testdata/pacompat"

// testCase is one testdata/pacompat/*.yaml: a prometheus-adapter config, the series discovery
// would list, and the requests an HPA (or kubectl) would make.
type testCase struct {
	About  string `json:"about"`
	Config string `json:"config"`
	// Resources are the cluster's resources beyond naming.BuiltinResources.
	Resources []struct {
		Group      string `json:"group"`
		Resource   string `json:"resource"`
		Kind       string `json:"kind"`
		Singular   string `json:"singular"`
		Namespaced bool   `json:"namespaced"`
	} `json:"resources"`
	Series []struct {
		Query string   `json:"query"`
		Names []string `json:"names"` // name{label,label,...}
	} `json:"series"`
	Requests []testRequest `json:"requests"`
}

type testRequest struct {
	About     string   `json:"about"`
	Metric    string   `json:"metric"`
	Resource  string   `json:"resource"` // pods, deployments.apps, namespaces, ... or external
	Namespace string   `json:"namespace"`
	Names     []string `json:"names"`
	Selector  string   `json:"selector"`
	// Differs says why our query deliberately differs from prometheus-adapter's for this request.
	Differs string `json:"differs"`
}

func loadCase(t *testing.T, path string) *testCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tc testCase
	if err := yaml.UnmarshalStrict(data, &tc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &tc
}

func (tc *testCase) resolver() naming.StaticResolver {
	r := naming.BuiltinResources()
	for _, x := range tc.Resources {
		r.Add(naming.Resource{GroupResource: schema.GroupResource{Group: x.Group, Resource: x.Resource}, Version: "v1", Kind: x.Kind, Singular: x.Singular, Namespaced: x.Namespaced})
	}
	return r
}

// parseSeries reads name{label,label}.
func parseSeries(query, s string) Series {
	name, rest, _ := strings.Cut(s, "{")
	out := Series{Query: query, Name: name}
	for _, l := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if l = strings.TrimSpace(l); l != "" {
			out.Labels = append(out.Labels, l)
		}
	}
	return out
}

func (tc *testCase) series() []Series {
	var out []Series
	for _, g := range tc.Series {
		for _, s := range g.Names {
			out = append(out, parseSeries(g.Query, s))
		}
	}
	return out
}

// find looks a request's metric up as the API server does: by name, resource and whether a namespace was given.
func find(metrics []Metric, resolver naming.Resolver, r testRequest) (*Metric, error) {
	if r.Resource == "external" {
		for i := range metrics {
			if metrics[i].External && metrics[i].Name == r.Metric {
				return &metrics[i], nil
			}
		}
		return nil, fmt.Errorf("not found")
	}
	res, err := resolver.Resolve(r.Resource)
	if err != nil {
		return nil, err
	}
	for i := range metrics {
		m := &metrics[i]
		if !m.External && m.Name == r.Metric && m.Resource.GroupResource == res.GroupResource && m.Namespaced == (r.Namespace != "") {
			return m, nil
		}
	}
	return nil, fmt.Errorf("not found")
}

func metricLine(m *Metric) string {
	scope := "cluster"
	if m.Namespaced {
		scope = "namespaced"
	}
	orDash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	if m.External {
		return fmt.Sprintf("external %s %s series=%s name-label=- namespace-label=%s", m.Name, scope, m.Series, orDash(m.NamespaceLabel()))
	}
	return fmt.Sprintf("custom %s/%s %s series=%s name-label=%s namespace-label=%s",
		m.Resource.GroupResource.String(), m.Name, scope, m.Series, orDash(m.NameLabel()), orDash(m.NamespaceLabel()))
}

// run renders a case in the format of the .golden files, and returns each request's output.
func run(t *testing.T, tc *testCase) (string, []string) {
	t.Helper()
	var b strings.Builder
	cfg, err := Parse([]byte(tc.Config))
	if err != nil {
		return "== config error\n" + err.Error() + "\n", nil
	}
	resolver := tc.resolver()
	rules, err := Compile(cfg, resolver)
	if err != nil {
		return "== config error\n" + err.Error() + "\n", nil
	}
	if len(rules.Warnings) > 0 {
		b.WriteString("== warnings\n")
		for _, w := range rules.Warnings {
			b.WriteString(w + "\n")
		}
	}
	for _, g := range tc.Series {
		if !slices.Contains(rules.SeriesQueries(), g.Query) {
			t.Errorf("series listed for %q, which is no rule's seriesQuery (have %q)", g.Query, rules.SeriesQueries())
		}
	}
	metrics := rules.Expand(tc.series())
	lines := make([]string, len(metrics))
	for i := range metrics {
		lines[i] = metricLine(&metrics[i])
	}
	sort.Strings(lines)
	b.WriteString("== metrics\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("== requests\n")
	var outs []string
	for _, r := range tc.Requests {
		fmt.Fprintf(&b, "-- %s\n", r.About)
		names := fmt.Sprintf("%q", r.Names)
		if r.Names == nil {
			names = "(every object)"
		}
		fmt.Fprintf(&b, "# %s/%s namespace=%q names=%s selector=%q\n", r.Resource, r.Metric, r.Namespace, names, r.Selector)
		out := doRequest(metrics, resolver, r)
		outs = append(outs, out)
		b.WriteString(out + "\n")
	}
	return b.String(), outs
}

func doRequest(metrics []Metric, resolver naming.Resolver, r testRequest) string {
	m, err := find(metrics, resolver, r)
	if err != nil {
		return "error: " + err.Error()
	}
	sel, err := k8slabels.Parse(r.Selector)
	if err != nil {
		return "error: " + err.Error()
	}
	q, err := m.Build(naming.Selection{Namespace: r.Namespace, Names: r.Names, Selector: sel})
	if err != nil {
		return "error: " + err.Error()
	}
	return q
}

func casePaths(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 15 {
		t.Fatalf("only %d cases in %s", len(paths), testdata)
	}
	return paths
}

// TestGolden renders discovery and every request of each case and compares with testdata/pacompat/*.golden.
func TestGolden(t *testing.T) {
	for _, path := range casePaths(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			got, _ := run(t, loadCase(t, path))
			testutil.Golden(t, strings.TrimSuffix(path, ".yaml")+".golden", got, *update)
		})
	}
}

// TestSameAsPrometheusAdapter compares each case with prometheus-adapter's own output
// (testdata/pacompat/*.pa.golden, recorded outside this repository; see its README): the same metrics, and
// byte for byte the same query for every request, except where the case says why it differs.
func TestSameAsPrometheusAdapter(t *testing.T) {
	for _, path := range casePaths(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			tc := loadCase(t, path)
			want, err := os.ReadFile(strings.TrimSuffix(path, ".yaml") + ".pa.golden")
			if err != nil {
				t.Fatal(err)
			}
			got, outs := run(t, tc)
			wantMetrics, wantReqs := splitGolden(string(want))
			gotMetrics, _ := splitGolden(got)
			if strings.HasPrefix(string(want), "== config error") != strings.HasPrefix(got, "== config error") {
				t.Fatalf("config acceptance differs:\n--- ours\n%s\n--- prometheus-adapter\n%s", got, want)
			}
			if gotMetrics != wantMetrics {
				t.Errorf("discovery differs:\n--- ours\n%s--- prometheus-adapter\n%s", gotMetrics, wantMetrics)
			}
			if len(wantReqs) != len(outs) {
				t.Fatalf("%d requests recorded for prometheus-adapter, %d here: re-record the .pa.golden file", len(wantReqs), len(outs))
			}
			for i, r := range tc.Requests {
				pa, ours := wantReqs[i], outs[i]
				switch {
				case strings.HasPrefix(pa, "n/a"):
					if r.Differs == "" {
						t.Errorf("%s: prometheus-adapter has no equivalent; say so in differs", r.About)
					}
				case strings.HasPrefix(pa, "error:"):
					if !strings.HasPrefix(ours, "error:") {
						t.Errorf("%s: prometheus-adapter fails (%s), we render %s", r.About, pa, ours)
					}
				case r.Differs != "":
					if ours == pa {
						t.Errorf("%s: marked as differing (%s), but the queries are equal", r.About, r.Differs)
					}
					if strings.HasPrefix(ours, "error:") {
						t.Logf("%s: we refuse (%s) where prometheus-adapter renders %s", r.About, ours, pa)
					}
				case ours != pa:
					t.Errorf("%s:\nours %s\nPA   %s", r.About, ours, pa)
				}
			}
		})
	}
}

// splitGolden returns the metrics section and each request's output (comment lines dropped).
func splitGolden(s string) (string, []string) {
	var metrics strings.Builder
	var reqs []string
	section := ""
	var cur []string
	flush := func() {
		if cur != nil {
			reqs = append(reqs, strings.Join(cur, "\n"))
		}
		cur = nil
	}
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "== "):
			flush()
			section = line
		case section == "== metrics":
			metrics.WriteString(line + "\n")
		case section == "== requests" && strings.HasPrefix(line, "-- "):
			flush()
			cur = []string{}
		case section == "== requests" && strings.HasPrefix(line, "# ") && len(cur) == 0:
		case section == "== requests":
			cur = append(cur, line)
		}
	}
	flush()
	return metrics.String(), reqs
}

// TestConcurrentUse runs discovery and query building from several goroutines (go test -race).
func TestConcurrentUse(t *testing.T) {
	tc := loadCase(t, filepath.Join(testdata, "container-and-app-defaults.yaml"))
	cfg, err := Parse([]byte(tc.Config))
	if err != nil {
		t.Fatal(err)
	}
	resolver := tc.resolver()
	rules, err := Compile(cfg, resolver)
	if err != nil {
		t.Fatal(err)
	}
	want := rules.Expand(tc.series())
	done := make(chan string)
	for range 4 {
		go func() {
			var b strings.Builder
			metrics := rules.Expand(tc.series())
			for _, r := range tc.Requests {
				b.WriteString(doRequest(metrics, resolver, r) + "\n")
			}
			done <- b.String()
		}()
	}
	first := <-done
	for range 3 {
		if got := <-done; got != first {
			t.Errorf("concurrent runs differ:\n%s\n---\n%s", got, first)
		}
	}
	if len(want) == 0 || strings.Contains(first, "error: metric") {
		t.Errorf("unexpected output:\n%s", first)
	}
}
