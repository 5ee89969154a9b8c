package adapter

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// fuzzPAConfig reaches the query every way a prometheus-adapter rule can: .LabelMatchers, and
// .LabelValuesByName in double-quoted, single-quoted and backtick raw strings.
const fuzzPAConfig = `
rules:
- seriesQuery: '{__name__="http_requests_total"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>,code!~"5.."}[2m])) by (<<.GroupBy>>)
- seriesQuery: '{__name__="nginx_total"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: >-
    sum by (<<.GroupBy>>) (rate(<<.Series>>{namespace="<<index .LabelValuesByName "namespace">>",
    pod=~'<<index .LabelValuesByName "pod">>',code=~"<<index .LabelValuesByName "code">>"}[1m]))
- seriesQuery: '{__name__="raw_total"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: >-
    sum by (pod) (<<.Series>>{namespace=` + "`" + `<<index .LabelValuesByName "namespace">>` + "`" + `,
    pod=~` + "`" + `<<index .LabelValuesByName "pod">>` + "`" + `,code=` + "`" + `<<index .LabelValuesByName "code">>` + "`" + `})
externalRules:
- seriesQuery: '{__name__="queue_depth"}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)
`

// seriesQuerier is a recordingQuerier that also lists fixed series for prometheus-adapter discovery.
type seriesQuerier struct {
	recordingQuerier
	series []naming.SeriesLabels
}

func (q *seriesQuerier) Series(_ context.Context, selector string, _ time.Time) ([]naming.SeriesLabels, error) {
	var out []naming.SeriesLabels
	for _, s := range q.series {
		s.Query = selector
		if strings.Contains(selector, `"`+s.Name+`"`) {
			out = append(out, s)
		}
	}
	return out, nil
}

// fuzzProviders are a provider over the native example rules and one over fuzzPAConfig.
func fuzzProviders(t testing.TB) map[string]*Provider {
	pa, _, err := pacompat.Load([]byte(fuzzPAConfig), naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	pq := &seriesQuerier{series: []naming.SeriesLabels{
		{Name: "http_requests_total", Labels: []string{"code", "namespace", "pod"}},
		{Name: "nginx_total", Labels: []string{"code", "namespace", "pod"}},
		{Name: "raw_total", Labels: []string{"code", "namespace", "pod"}},
		{Name: "queue_depth", Labels: []string{"namespace", "queue"}},
	}}
	paProvider := NewProvider(Options{Querier: pq, Metrics: NewMetrics(prometheus.NewRegistry())}, pa)
	if err := paProvider.Discover(context.Background(), time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := len(paProvider.ListAllMetrics()); n < 3 {
		t.Fatalf("prometheus-adapter rules serve %d metrics", n)
	}
	native := NewProvider(Options{Querier: &seriesQuerier{}, Metrics: NewMetrics(prometheus.NewRegistry())}, testRules(t))
	return map[string]*Provider{"native": native, "prometheus-adapter": paProvider}
}

// benign is sel with every value replaced by a harmless one, keeping keys, operators and value counts.
func benign(sel labels.Selector) labels.Selector {
	out := labels.NewSelector()
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		vals := make([]string, r.Values().Len())
		for i := range vals {
			vals[i] = fmt.Sprintf("v%d", i)
			if r.Operator() == selection.GreaterThan || r.Operator() == selection.LessThan {
				vals[i] = fmt.Sprint(i) // gt and lt take integers only
			}
		}
		b, err := labels.NewRequirement(r.Key(), r.Operator(), vals)
		if err != nil {
			panic(err)
		}
		out = out.Add(*b)
	}
	return out
}

// FuzzProvider sends hostile namespaces, object names and metric selectors to both rule formats'
// providers: invalid names get 400 before any query; every query sent has the structure of the
// same request with harmless values; nothing panics.
func FuzzProvider(f *testing.F) {
	for _, s := range [][3]string{
		{"shop", "web-1", "code=200"},
		{"shop", "a`) or vector(1) or up{x=`", "code in (200,404)"},
		{`sh"op`, `we'b`, "code!=500,app"},
		{"shop\n", "web-1\n", "code=a\nb"},
		{"\xff", "\xfe\x00", "!code"},
		{strings.Repeat("a", 64<<10), strings.Repeat("b.", 32<<10), "code=" + strings.Repeat("c", 64<<10)},
		{"shop", "web.1", "code notin (a.b,c-d,e_f)"},
		{"", "n", "__name__=up"},
		{"shop", "web-1", "code>5"},
		{"shop", "web-1", "code<0,app=x"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	providers := fuzzProviders(f)
	f.Fuzz(func(t *testing.T, ns, name, selector string) {
		metricSel, err := labels.Parse(selector)
		if err != nil {
			metricSel = labels.Everything() // the API server answers 400 before the provider is called
		}
		nsValid := ns == "" || len(ns) <= validation.DNS1123LabelMaxLength && len(validation.IsDNS1123Label(ns)) == 0
		for format, p := range providers {
			q := queriesOf(p)
			for _, info := range p.ListAllMetrics() {
				reqNS := ns
				if !info.Namespaced {
					reqNS = ""
				}
				nameValid := nsValid || !info.Namespaced
				nameValid = nameValid && naming.ValidateObjectName(info.GroupResource, name) == nil
				check(t, format+" "+info.Metric+" by name", q, nameValid, func(ns, name string, sel labels.Selector) error {
					_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, info, sel)
					return err
				}, reqNS, name, metricSel)
				check(t, format+" "+info.Metric+" by selector", q, nsValid || !info.Namespaced, func(ns, _ string, sel labels.Selector) error {
					_, err := p.GetMetricBySelector(context.Background(), ns, labels.Everything(), info, sel)
					return err
				}, reqNS, "", metricSel)
			}
			for _, info := range p.ListAllExternalMetrics() {
				check(t, format+" "+info.Metric, q, nsValid, func(ns, _ string, sel labels.Selector) error {
					_, err := p.GetExternalMetric(context.Background(), ns, sel, provider.ExternalMetricInfo{Metric: info.Metric})
					return err
				}, ns, "", metricSel)
			}
		}
	})
}

func queriesOf(p *Provider) *recordingQuerier {
	switch q := p.opts.Querier.(type) {
	case *seriesQuerier:
		return &q.recordingQuerier
	case *recordingQuerier:
		return q
	}
	panic("unexpected querier")
}

// check runs call with the hostile values and with harmless ones, and compares what reached Prometheus.
func check(t *testing.T, about string, q *recordingQuerier, valid bool, call func(ns, name string, sel labels.Selector) error, ns, name string, sel labels.Selector) {
	t.Helper()
	before := len(q.asked())
	err := call(ns, name, sel)
	asked := q.asked()[before:]
	if !valid {
		if !apierrors.IsBadRequest(err) || len(asked) > 0 {
			t.Fatalf("%s: invalid name %q/%q: got %v and queries %q; want 400 and none", about, ns, name, err, asked)
		}
		return
	}
	if naming.ValidateSelector(sel, 0) != nil {
		if !apierrors.IsBadRequest(err) || len(asked) > 0 {
			t.Fatalf("%s: refused selector %q: got %v and queries %q", about, sel, err, asked)
		}
		return
	}
	benignNS, benignName := ns, name
	if ns != "" {
		benignNS = "ns"
	}
	if name != "" {
		benignName = "n0"
	}
	before = len(q.asked())
	benignErr := call(benignNS, benignName, benign(sel))
	want := q.asked()[before:]
	if apierrors.IsBadRequest(benignErr) || apierrors.IsServiceUnavailable(benignErr) {
		// The rule cannot answer this kind of request (e.g. .LabelValuesByName without object names: 503).
		if err == nil || len(asked) > 0 {
			t.Fatalf("%s: accepted %q/%q %q where harmless values get %v", about, ns, name, sel, benignErr)
		}
		return
	}
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("%s: valid request %q/%q %q: %v", about, ns, name, sel, err)
	}
	if len(asked) != 1 || len(want) != 1 {
		t.Fatalf("%s: %d queries, %d for harmless values", about, len(asked), len(want))
	}
	got, err := parser.NewParser(parser.Options{}).ParseExpr(asked[0])
	if err != nil {
		t.Fatalf("%s: query does not parse: %v\n%s", about, err, asked[0])
	}
	wantExpr, err := parser.NewParser(parser.Options{}).ParseExpr(want[0])
	if err != nil {
		t.Fatal(err)
	}
	if g, w := testutil.QueryShape(got), testutil.QueryShape(wantExpr); g != w {
		t.Fatalf("%s: structure changed:\n got %s\nwant %s\nquery %s", about, g, w, asked[0])
	}
}
