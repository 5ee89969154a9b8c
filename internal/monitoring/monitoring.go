// Package monitoring reads the alert rules and the Grafana dashboard the project ships, lists the
// metric names their PromQL uses, and lists the metrics the binaries' own code registers, so that
// tests can hold the alerts and the dashboard to metrics that exist.
package monitoring

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apiserver/pkg/endpoints/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/forward"
	"github.com/promql-adapter/promql-adapter/wake"
)

// Paths of the shipped files, relative to the repository root.
const (
	RulesFile     = "charts/promql-adapter/alerts/promql-adapter.rules.yaml" // the alert rules' one source
	RuleTestsFile = "testdata/alerts/tests.yaml"                             // promtool unit tests of every alert
	PrometheusCR  = "deploy/prometheus-rule.yaml"                            // the chart's PrometheusRule, rendered
	DashboardFile = "charts/promql-adapter/dashboards/promql-adapter.json"   // the Grafana dashboard's one source
	DeployDash    = "deploy/grafana/promql-adapter.json"                     // its copy in deploy/ (make deploy-render)
	RunbookFile   = "docs/runbook.md"                                        // one section per alert
)

// External are the metrics the alerts may use that no code of this repository registers, with where
// they come from. The e2e test TestE2EAlertMetricsScraped finds the kube-apiserver one on a real
// kube-apiserver's /metrics; up is made by Prometheus itself for every target.
var External = map[string]string{
	"up":                                "Prometheus, per scrape target",
	"aggregator_unavailable_apiservice": "kube-apiserver's aggregator, per APIService",
}

// Rule is one alerting or recording rule of a Prometheus rule file.
type Rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Group is a rule group.
type Group struct {
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// RuleFile is a Prometheus rule file (and a PrometheusRule's spec).
type RuleFile struct {
	Groups []Group `json:"groups"`
}

// ReadRules reads a Prometheus rule file; unknown fields are errors.
func ReadRules(path string) (*RuleFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f RuleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, nil
}

// Alerts returns the file's alerting rules, in order.
func (f *RuleFile) Alerts() []Rule {
	var out []Rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// MetricNames returns the metric names an expression selects, sorted. A selector without a fixed
// name (e.g. {__name__=~"..."}) is an error: its metrics cannot be checked.
func MetricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", expr, err)
	}
	seen := map[string]bool{}
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				if m.Type.String() != "=" {
					bad = fmt.Errorf("%q: selector %s has no fixed metric name", expr, vs)
				}
				name = m.Value
			}
		}
		if name != "" {
			seen[name] = true
		}
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Dashboard is the part of a Grafana dashboard JSON the tests read.
type Dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []Panel `json:"panels"`
}

// Panel is a Grafana panel; a row holds panels of its own when collapsed.
type Panel struct {
	Title   string   `json:"title"`
	Type    string   `json:"type"`
	Targets []Target `json:"targets"`
	Panels  []Panel  `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	Expr  string `json:"expr"`
	RefID string `json:"refId"`
}

// ReadDashboard reads a Grafana dashboard JSON file.
func ReadDashboard(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// grafanaVars are the Grafana variables the dashboard's queries may use, with a value that parses.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// Queries returns every panel's PromQL (rows' panels included) by panel title, with Grafana's
// interval variables replaced so that the result parses.
func (d *Dashboard) Queries() map[string][]string {
	out := map[string][]string{}
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out[p.Title] = append(out[p.Title], grafanaVars.Replace(t.Expr))
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Registered returns the metric names the code of promql-adapter (its own metrics, forwarding's,
// and the generic API server's apiserver_request_total), promql-wake and promql-activator
// registers, as they appear on /metrics (a histogram as NAME_bucket, NAME_sum and NAME_count),
// each with the binary that serves it. It reads the collectors' descriptors, so a vector that has
// no sample yet is listed too.
func Registered() (map[string]string, error) {
	out := map[string]string{}
	rec := func(binary string) *recorder { return &recorder{binary: binary, names: out} }
	adapter.NewMetrics(rec("promql-adapter"))
	if _, err := forward.New(nil, nil, nil, 0, rec("promql-adapter")); err != nil {
		return nil, err
	}
	wake.NewMetrics(rec("promql-wake"))
	activator.NewMetrics(rec("promql-activator"))
	// promql-wake's registry holds the Go and process collectors, which always have samples.
	if err := gatherNames(wake.NewRegistry(), "promql-wake", out); err != nil {
		return nil, err
	}
	// The generic API server counts every request it answers, the 429s of its in-flight limit among
	// them, in apiserver_request_total: record one such 429 as the server does, and read it back.
	metrics.Register()
	metrics.RecordDroppedRequest(httptest.NewRequest("GET", "/apis/custom.metrics.k8s.io/v1beta2", nil), nil, metrics.APIServerComponent, false)
	if err := gatherNames(legacyregistry.DefaultGatherer, "promql-adapter", out); err != nil {
		return nil, err
	}
	return out, nil
}

func gatherNames(g prometheus.Gatherer, binary string, into map[string]string) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather %s: %w", binary, err)
	}
	for _, mf := range mfs {
		for _, n := range ExpositionNames(mf.GetName(), mf.GetType().String()) {
			if _, ok := into[n]; !ok {
				into[n] = binary
			}
		}
	}
	return nil
}

// ExpositionNames are the series names a metric family of a type (COUNTER, GAUGE, HISTOGRAM,
// SUMMARY, UNTYPED, as client_model names them) shows on /metrics.
func ExpositionNames(name, typ string) []string {
	switch typ {
	case "HISTOGRAM", "GAUGE_HISTOGRAM":
		return []string{name + "_bucket", name + "_sum", name + "_count"}
	case "SUMMARY":
		return []string{name, name + "_sum", name + "_count"}
	}
	return []string{name}
}

// recorder is a prometheus.Registerer that keeps the names of what is registered with it.
type recorder struct {
	binary string
	names  map[string]string
}

var fqName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	typ := "COUNTER"
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec:
		typ = "HISTOGRAM"
	case prometheus.Summary, *prometheus.SummaryVec:
		typ = "SUMMARY"
	}
	var err error
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			err = fmt.Errorf("descriptor without a name: %s", d)
			continue
		}
		for _, n := range ExpositionNames(m[1], typ) {
			r.names[n] = r.binary
		}
	}
	return err
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }
