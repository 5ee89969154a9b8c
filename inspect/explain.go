// Package inspect holds the adapter's diagnostic tools: Explain shows the PromQL one metrics
// API request runs, and Check runs every rule once against Prometheus and says what each
// serves or why it serves nothing. Both run the adapter's own code (adapter.Provider,
// naming.Metric.Build), never a second implementation.
package inspect

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/common/model"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
)

// Explanation is the PromQL one metrics API request runs, and how the adapter answers it.
type Explanation struct {
	Path       string   `json:"path"`                 // the request as given
	API        string   `json:"api"`                  // group/version, e.g. custom.metrics.k8s.io/v1beta2
	Metric     string   `json:"metric"`               // the metric name
	Resource   string   `json:"resource,omitempty"`   // the group-resource described, e.g. pods, deployments.apps; empty for external metrics
	External   bool     `json:"external"`             // served by external.metrics.k8s.io
	Namespace  string   `json:"namespace,omitempty"`  // the request's namespace
	Object     string   `json:"object,omitempty"`     // the described object's name, or * for every object
	Rule       string   `json:"rule"`                 // the rule that yields the metric, e.g. "metrics[0] (metric)"
	Backend    string   `json:"backend"`              // the backend the query goes to: "default" (the --prometheus-* flags) or a declared one
	BackendURL string   `json:"backendURL,omitempty"` // that backend's URL, when known
	Query      string   `json:"query"`                // the PromQL sent to Prometheus
	Notes      []string `json:"notes,omitempty"`      // how the request becomes the query and the answer
}

// String renders the explanation for people.
func (e Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s\n", e.Path)
	what := e.Resource
	if e.External {
		what = naming.External
	}
	fmt.Fprintf(&b, "metric:  %s (%s, %s)\n", e.Metric, e.API, what)
	fmt.Fprintf(&b, "rule:    %s\n", e.Rule)
	if e.Backend != "" {
		fmt.Fprintf(&b, "backend: %s", e.Backend)
		if e.BackendURL != "" {
			fmt.Fprintf(&b, " (%s)", e.BackendURL)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "query:   %s\n", e.Query)
	for i, n := range e.Notes {
		if i == 0 {
			b.WriteString("notes:\n")
		}
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	return b.String()
}

// Explain returns the PromQL the adapter runs for the metrics API request apiPath. p must serve
// rules and, for discovered metrics, have run Discover.
func Explain(ctx context.Context, rules *naming.Rules, apiPath string, p *adapter.Provider) (Explanation, error) {
	if err := ctx.Err(); err != nil {
		return Explanation{}, fmt.Errorf("explain %s: %w", apiPath, err)
	}
	req, err := parseRequest(apiPath)
	if err != nil {
		return Explanation{}, err
	}
	s, err := servedMetrics(p, rules)
	if err != nil {
		return Explanation{}, fmt.Errorf("explain %s: %w", apiPath, err)
	}
	var x Explanation
	if req.external {
		x, err = explainExternal(req, s, p)
	} else {
		x, err = explainCustom(req, s, p)
	}
	if err != nil {
		return x, err
	}
	for _, b := range rules.Backends {
		if b.Name == x.Backend {
			x.BackendURL = b.URL
		}
	}
	return x, nil
}

func explainCustom(req *request, s *served, p *adapter.Provider) (Explanation, error) {
	e := s.lookup(req.resource, req.metric)
	if e == nil || !listsCustom(p, e.metric) {
		return Explanation{}, notServed(req, s, p, e != nil)
	}
	m := e.metric
	namespaced := req.namespace != ""
	if m.Resource.Namespaced != namespaced {
		how := "namespaced; ask under /namespaces/<namespace>/"
		if !m.Resource.Namespaced {
			how = "cluster-scoped; ask without a namespace"
		}
		return Explanation{}, fmt.Errorf("explain %s: metric %q describes %s, which are %s", req.raw, req.metric, m.Resource.GroupResource, how)
	}
	sel := naming.Selection{Namespace: req.namespace, Selector: req.metricSel}
	if req.name != "*" && !sharedByRule(m) {
		sel.Names = []string{req.name}
	}
	query, err := m.Build(sel)
	if err != nil {
		return Explanation{}, fmt.Errorf("explain %s: the adapter answers 400: metric %q: %w", req.raw, m.Name, err)
	}
	x := Explanation{
		Path: req.raw, API: req.api, Metric: m.Name, Resource: m.Resource.GroupResource.String(),
		Namespace: req.namespace, Object: req.name, Rule: ruleText(e), Query: query,
	}
	res := m.Resource.GroupResource.Resource
	switch {
	case req.name == "*" && req.objectSel != nil && !req.objectSel.Empty():
		x.Notes = append(x.Notes, fmt.Sprintf("labelSelector %q is resolved to %s names from the cluster's object cache at request time, "+
			"not by Prometheus: when the selected %s are a minority of %s and their names fit 8 KiB, the query is narrowed with %s=~\"<name>|<name>|...\"; "+
			"otherwise it runs as shown and the result is filtered to them. Without a cluster connection the adapter answers 400",
			req.objectSel, m.Resource.Singular, res, scope(req), m.NameLabel))
	case req.name == "*":
		x.Notes = append(x.Notes, fmt.Sprintf("every %s in %s that has a sample is returned, keyed by label %q; objects without a sample are absent, never zero",
			m.Resource.Singular, scope(req), m.NameLabel))
	default:
		x.Notes = append(x.Notes, fmt.Sprintf("the answer is the sample whose label %s is %q; 404 if there is none", m.NameLabel, req.name))
		if req.objectSel != nil && !req.objectSel.Empty() {
			x.Notes = append(x.Notes, fmt.Sprintf("labelSelector %q is ignored for a single object", req.objectSel))
		}
	}
	if req.resource != m.Resource.GroupResource {
		x.Notes = append(x.Notes, fmt.Sprintf("resource %q is served as %s", req.resource, m.Resource.GroupResource))
	}
	return finish(x, e, req), nil
}

func explainExternal(req *request, s *served, p *adapter.Provider) (Explanation, error) {
	e := s.lookupExternal(req.metric)
	if e == nil || !listsExternal(p, req.metric) {
		return Explanation{}, notServed(req, s, p, e != nil)
	}
	m := e.metric
	query, err := m.Build(naming.Selection{Namespace: req.namespace, Selector: req.metricSel})
	if err != nil {
		return Explanation{}, fmt.Errorf("explain %s: the adapter answers 400: external metric %q: %w", req.raw, m.Name, err)
	}
	x := Explanation{
		Path: req.raw, API: req.api, Metric: m.Name, External: true,
		Namespace: req.namespace, Rule: ruleText(e), Query: query,
	}
	if m.NSLabel != "" {
		x.Notes = append(x.Notes, fmt.Sprintf("the request's namespace becomes the matcher %s=%q", m.NSLabel, req.namespace))
	} else {
		x.Notes = append(x.Notes, "the rule is not namespaced: the request's namespace is not a matcher, so any namespace reads every series")
	}
	x.Notes = append(x.Notes, "every series the query returns is one item, with its labels; the HPA sums them")
	return finish(x, e, req), nil
}

// finish adds the notes every kind of request shares.
func finish(x Explanation, e *entry, req *request) Explanation {
	m := e.metric
	x.Backend = m.Backend
	if x.Backend == "" {
		x.Backend = naming.DefaultBackend
	}
	param := "metricLabelSelector"
	if req.external {
		param = "labelSelector"
	}
	if req.metricSel != nil && !req.metricSel.Empty() {
		ms, err := naming.SelectorMatchers(req.metricSel)
		if err == nil {
			parts := make([]string, len(ms))
			for i, lm := range ms {
				parts[i] = lm.String()
			}
			x.Notes = append(x.Notes, fmt.Sprintf("%s %q becomes %s", param, req.metricSel, strings.Join(parts, ", ")))
		}
	}
	switch e.origin.kind {
	case KindDiscover:
		x.Notes = append(x.Notes, fmt.Sprintf("discovered: series %s, listed by %s", e.origin.series, e.origin.selector))
	case KindPrometheusAdapter:
		x.Notes = append(x.Notes, fmt.Sprintf("rendered from the prometheus-adapter rule's metricsQuery template, as prometheus-adapter renders it (series listed by %s)", e.origin.selector))
	default:
		x.Notes = append(x.Notes, "the matchers are injected into the vector selectors of the rule's query (all, or those its inject field names), never pasted into its text")
	}
	if m.Window != nil {
		x.Notes = append(x.Notes, fmt.Sprintf("window reported to the HPA: %ds", *m.Window))
	}
	if m.Fallback != nil {
		x.Notes = append(x.Notes, fmt.Sprintf("while Prometheus fails, %s is served instead (fallback)", m.Fallback))
	}
	switch {
	case sharedByRule(m):
		x.Notes = append(x.Notes, fmt.Sprintf("coalesced (the rule's freshness, %s): the requests for this metric, %s and metric selector share one answer to this query, "+
			"no older than %s, each filtered to its own objects; promql_adapter_coalesced_answer_age_seconds counts the age served", model.Duration(*m.Freshness), scope(req), model.Duration(*m.Freshness)))
	case m.Freshness != nil:
		x.Notes = append(x.Notes, "never coalesced (the rule's freshness is 0s): every request runs its own query")
	}
	if len(req.ignored) > 0 {
		x.Notes = append(x.Notes, fmt.Sprintf("query parameters the adapter does not read: %s", strings.Join(req.ignored, ", ")))
	}
	return x
}

func scope(req *request) string {
	if req.namespace == "" {
		return "the cluster"
	}
	return "namespace " + req.namespace
}

// sharedByRule reports whether the rule itself turns coalescing on for m (see server's
// --coalesce-freshness for the default, which Explain does not know).
func sharedByRule(m *naming.Metric) bool {
	return m.Freshness != nil && *m.Freshness > 0 && !m.NeedsNames
}

// ruleText names the rule a metric comes from, e.g. "metrics[4] (discover)".
func ruleText(e *entry) string {
	return fmt.Sprintf("%s (%s)", e.origin.ref(), e.origin.kind)
}

func listsCustom(p *adapter.Provider, m *naming.Metric) bool {
	for _, i := range p.ListAllMetrics() {
		if i.GroupResource == m.Resource.GroupResource && i.Metric == m.Name {
			return true
		}
	}
	return false
}

func listsExternal(p *adapter.Provider, name string) bool {
	for _, i := range p.ListAllExternalMetrics() {
		if i.Metric == name {
			return true
		}
	}
	return false
}

// notServed says what the adapter's 404 says, and why discovery may not have listed the metric yet.
func notServed(req *request, s *served, p *adapter.Provider, yielded bool) error {
	var msg string
	if req.external {
		msg = p.NotServedExternal(req.metric)
	} else {
		msg = p.NotServed(provider.CustomMetricInfo{GroupResource: req.resource, Metric: req.metric})
	}
	if p.HasDiscovery() && !s.discovered() {
		msg += " (no discovered metric is listed: discovered metrics appear only after Provider.Discover)"
	}
	if yielded {
		msg += "; the rules yield it but the provider does not list it: was the provider built with these rules?"
	}
	return fmt.Errorf("explain %s: %s", req.raw, msg)
}
