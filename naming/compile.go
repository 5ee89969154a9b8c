package naming

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/api/resource"
)

var metricNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:-]*$`)

// MaxFreshness is the largest freshness a rule may set: an answer shared between requests is never
// older than this.
const MaxFreshness = 5 * time.Minute

// Metric is one validated rule for one metric name, ready to build queries.
type Metric struct {
	Name      string
	External  bool     // served by external.metrics.k8s.io
	Resource  Resource // what the metric describes (zero for external metrics)
	NSLabel   string   // label holding the namespace; empty when no namespace matcher is injected
	NameLabel string   // label holding the described object's name (empty for external metrics)
	Window    *int64   // seconds, reported to the HPA
	Fallback  *resource.Quantity
	Freshness *time.Duration                  // bound on a shared answer's age; nil: the adapter's default, 0: never shared
	RuleIndex int                             // position of the rule in its file
	Backend   string                          // the declared backend its queries read; empty: the default
	query     string                          // the PromQL with the series name substituted
	inject    []string                        // vector selector names to inject into; empty means all
	render    func(Selection) (string, error) // set for rule formats that render text (prometheus-adapter)

	// NeedsNames: the query must be given the object names on every request (prometheus-adapter's
	// .LabelValuesByName), never a whole namespace to filter afterwards.
	NeedsNames bool

	// KeepNameLabel: an external metric's answer keeps the series' __name__ in metricLabels, as
	// prometheus-adapter's answers do (set for its rule format).
	KeepNameLabel bool
}

// NewRendered returns m with its PromQL rendered by another rule format, such as
// prometheus-adapter's templates, instead of matcher injection.
func NewRendered(m Metric, render func(Selection) (string, error)) *Metric {
	m.render = render
	return &m
}

// Query is the rule's PromQL before any matcher is injected.
func (m *Metric) Query() string { return m.query }

// Template is a validated discovery rule: one Metric per series name it matches.
type Template struct {
	RuleIndex int
	Series    string // the series selector to list names with
	matches   *regexp.Regexp
	as        string
	proto     Metric // everything but Name and query
	query     string // with SeriesPlaceholder
}

// Rules is a validated rule file.
type Rules struct {
	Metrics   []*Metric      // fixed-name metrics
	Templates []*Template    // discovery rules
	Series    SeriesRules    // rules that need each series' label names (prometheus-adapter's format); may be nil
	Resource  *ResourceRules // metrics.k8s.io (cpu and memory); nil when the file has none
	Backends  []Backend      // the declared backends, in file order (the default one is not listed)
	Warnings  []string       // what loads but may not do what was meant, e.g. a query part without the namespace matcher
}

// SeriesLabels is one listed series reduced to its name and label names.
type SeriesLabels struct {
	Query  string   // the series selector that listed it
	Name   string   // the metric name
	Labels []string // the label names it carries, sorted
}

// SeriesRules is a rule set whose metrics follow from the listed series and their labels.
type SeriesRules interface {
	SeriesQueries() []string                      // the series selectors to list
	ExpandSeries(series []SeriesLabels) []*Metric // the metrics the listed series yield
}

// Compile validates every rule of cfg. Errors name the rule index, metric name and field; all are reported at once.
func Compile(cfg *Config, resolver Resolver) (*Rules, error) {
	out := &Rules{}
	var errs []error
	backends, err := compileBackends(cfg.Backends)
	if err != nil {
		errs = append(errs, err)
	}
	out.Backends = backends
	declared := make([]string, 0, len(cfg.Backends))
	for _, b := range cfg.Backends {
		if b.Name != "" && b.Name != DefaultBackend && !slices.Contains(declared, b.Name) {
			declared = append(declared, b.Name)
		}
	}
	seen := map[string]int{}
	for i := range cfg.Metrics {
		r := &cfg.Metrics[i]
		fail := func(field string, err error) {
			errs = append(errs, &RuleError{Index: i, Name: r.Name, Field: field, Err: err})
		}
		if err := checkRuleBackend(r.Backend, declared); err != nil {
			fail("backend", err)
			continue
		}
		m, tmpl, err := compileRule(i, r, resolver)
		if err != nil {
			var fe *RuleError
			if errors.As(err, &fe) {
				errs = append(errs, err)
			} else {
				fail("", err)
			}
			continue
		}
		if w := injectWarning(i, r); w != "" {
			out.Warnings = append(out.Warnings, w)
		}
		if m != nil {
			key := m.key()
			if j, dup := seen[key]; dup {
				fail("name", fmt.Errorf("metric %q for %s is already served by rule %d", m.Name, m.describes(), j))
				continue
			}
			seen[key] = i
			out.Metrics = append(out.Metrics, m)
		}
		if tmpl != nil {
			out.Templates = append(out.Templates, tmpl)
		}
	}
	if cfg.Resources != nil {
		rr, err := CompileResources(cfg.Resources)
		if err != nil {
			errs = append(errs, err)
		}
		out.Resource = rr
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func compileRule(i int, r *Rule, resolver Resolver) (*Metric, *Template, error) {
	fail := func(field string, err error) error {
		return &RuleError{Index: i, Name: r.Name, Field: field, Err: err}
	}
	m := Metric{Name: r.Name, RuleIndex: i, inject: r.Inject}
	if r.Backend != DefaultBackend {
		m.Backend = r.Backend
	}
	switch {
	case r.Resource == "":
		return nil, nil, fail("resource", errors.New(`required: pods, services, deployments.apps, nodes, namespaces, ... or "external"`))
	case strings.EqualFold(r.Resource, External):
		m.External = true
		if r.Labels.Name != "" {
			return nil, nil, fail("labels.name", errors.New("external metrics describe no object; only labels.namespace applies"))
		}
		if r.Namespaced == nil || *r.Namespaced {
			m.NSLabel = r.Labels.Namespace
			if m.NSLabel == "" {
				m.NSLabel = NamespaceLabel
			}
		} else if r.Labels.Namespace != "" {
			return nil, nil, fail("labels.namespace", errors.New("set, but namespaced is false"))
		}
	default:
		res, err := resolver.Resolve(r.Resource)
		if err != nil {
			return nil, nil, fail("resource", err)
		}
		if r.Namespaced != nil {
			return nil, nil, fail("namespaced", errors.New("applies to external metrics only; for objects it follows the resource"))
		}
		m.Resource = res
		m.NSLabel, m.NameLabel = labelsFor(res, r.Labels)
		if !res.Namespaced && r.Labels.Namespace != "" {
			return nil, nil, fail("labels.namespace", fmt.Errorf("%s is cluster-scoped", res.GroupResource))
		}
	}
	for _, l := range []string{m.NSLabel, m.NameLabel} {
		if l != "" && !IsLabelName(l) {
			return nil, nil, fail("labels", fmt.Errorf("%q is not a valid Prometheus label name", l))
		}
	}
	for _, n := range r.Inject {
		if !IsMetricName(n) {
			return nil, nil, fail("inject", fmt.Errorf("%q is not a valid metric name", n))
		}
	}
	if r.Fallback != "" {
		q, err := resource.ParseQuantity(r.Fallback)
		if err != nil {
			return nil, nil, fail("fallback", err)
		}
		m.Fallback = &q
	}
	if r.Freshness != "" {
		d, err := freshness(r.Freshness)
		if err != nil {
			return nil, nil, fail("freshness", err)
		}
		m.Freshness = &d
	}
	if r.Query == "" {
		return nil, nil, fail("query", errors.New("required"))
	}
	expr, err := parseQuery(r.Query)
	if err != nil {
		return nil, nil, fail("query", err)
	}
	m.Window, err = window(r.Window, expr)
	if err != nil {
		return nil, nil, fail("window", err)
	}
	if err := checkKeeps(expr, m.NameLabel); err != nil {
		return nil, nil, fail("query", err)
	}
	hasPlaceholder := usesSeries(expr, SeriesPlaceholder)
	if len(r.Inject) > 0 {
		for _, n := range r.Inject {
			if !usesSeries(expr, n) {
				return nil, nil, fail("inject", fmt.Errorf("the query has no selector of %q", n))
			}
		}
	}

	if r.Discover == nil {
		if r.Name == "" {
			return nil, nil, fail("name", errors.New("required (or use discover)"))
		}
		if !metricNameRE.MatchString(r.Name) {
			return nil, nil, fail("name", fmt.Errorf("%q: use letters, digits, _ . : -", r.Name))
		}
		if hasPlaceholder {
			return nil, nil, fail("query", fmt.Errorf("%s is only for discover rules", SeriesPlaceholder))
		}
		m.query = expr.String()
		return &m, nil, nil
	}

	d := r.Discover
	if r.Name != "" {
		return nil, nil, fail("name", errors.New("a discover rule names its metrics with discover.as"))
	}
	if !hasPlaceholder {
		return nil, nil, fail("query", fmt.Errorf("a discover rule's query must select %s, which each discovered series name replaces", SeriesPlaceholder))
	}
	if _, err := parser.NewParser(parser.Options{}).ParseMetricSelector(d.Series); err != nil {
		return nil, nil, fail("discover.series", err)
	}
	t := &Template{RuleIndex: i, Series: d.Series, as: d.As, proto: m, query: r.Query}
	matches := d.Matches
	if matches == "" {
		matches = ".*"
	}
	if t.matches, err = regexp.Compile("^(?:" + matches + ")$"); err != nil {
		return nil, nil, fail("discover.matches", err)
	}
	if d.As != "" && d.Matches == "" {
		return nil, nil, fail("discover.as", errors.New("needs discover.matches to take groups from"))
	}
	return nil, t, nil
}

func (m *Metric) key() string { return m.describes() + "/" + m.Name }

func (m *Metric) describes() string {
	if m.External {
		return "external"
	}
	return m.Resource.GroupResource.String()
}

// Resource is what the template's metrics describe (zero for external metrics).
func (t *Template) Resource() Resource { return t.proto.Resource }

// Backend is the declared backend the template lists series from and its metrics read; empty: the default.
func (t *Template) Backend() string { return t.proto.Backend }

// Expand returns the metric a discovered series name yields, or false when the name does not match.
func (t *Template) Expand(series string) (*Metric, bool) {
	sub := t.matches.FindStringSubmatchIndex(series)
	if sub == nil {
		return nil, false
	}
	name := series
	if t.as != "" {
		name = string(t.matches.ExpandString(nil, t.as, series, sub))
	}
	if !metricNameRE.MatchString(name) || !IsMetricName(series) {
		return nil, false
	}
	expr, err := parseQuery(t.query)
	if err != nil {
		return nil, false // validated at Compile; unreachable
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name == SeriesPlaceholder {
			vs.Name = series
			for _, lm := range vs.LabelMatchers {
				if lm.Name == model.MetricNameLabel {
					lm.Value = series
				}
			}
		}
		return nil
	})
	m := t.proto
	m.Name = name
	m.query = expr.String()
	m.inject = slices.Clone(m.inject)
	for i, n := range m.inject {
		if n == SeriesPlaceholder {
			m.inject[i] = series
		}
	}
	return &m, true
}

func parseQuery(q string) (parser.Expr, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return nil, err
	}
	if t := expr.Type(); t != parser.ValueTypeVector && t != parser.ValueTypeScalar {
		return nil, fmt.Errorf("evaluates to a %s; an instant vector is needed", t)
	}
	return expr, nil
}

// injectWarning says which of the query's selectors an inject list leaves without the request's
// namespace and object matchers, so they read every namespace; "" when none.
func injectWarning(i int, r *Rule) string {
	if len(r.Inject) == 0 {
		return ""
	}
	expr, err := parseQuery(r.Query)
	if err != nil {
		return ""
	}
	var left []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && !slices.Contains(r.Inject, vs.Name) && !slices.Contains(left, vs.String()) {
			left = append(left, vs.String())
		}
		return nil
	})
	if len(left) == 0 {
		return ""
	}
	return fmt.Sprintf("rule %d (%s): inject lists %s, so %s get no namespace or object matcher and read every namespace",
		i, r.Name, strings.Join(r.Inject, ", "), strings.Join(left, ", "))
}

func usesSeries(expr parser.Expr, name string) bool {
	found := false
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name == name {
			found = true
		}
		return nil
	})
	return found
}

// freshness parses a rule's freshness, refusing one above MaxFreshness.
func freshness(s string) (time.Duration, error) {
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if time.Duration(d) > MaxFreshness {
		return 0, fmt.Errorf("%s is above the maximum of %s: an answer shared between requests may be at most that old", s, model.Duration(MaxFreshness))
	}
	return time.Duration(d), nil
}

// window is the explicit window, else the longest range or subquery range in the query.
func window(explicit string, expr parser.Expr) (*int64, error) {
	if explicit != "" {
		d, err := model.ParseDuration(explicit)
		if err != nil {
			return nil, err
		}
		s := int64(time.Duration(d) / time.Second)
		return &s, nil
	}
	var longest time.Duration
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.MatrixSelector:
			longest = max(longest, n.Range)
		case *parser.SubqueryExpr:
			longest = max(longest, n.Range)
		}
		return nil
	})
	if longest == 0 {
		return nil, nil
	}
	s := int64(longest / time.Second)
	return &s, nil
}

// checkKeeps reports an outermost aggregation that drops the label results are keyed by.
func checkKeeps(expr parser.Expr, label string) error {
	if label == "" {
		return nil
	}
	for {
		p, ok := expr.(*parser.ParenExpr)
		if !ok {
			break
		}
		expr = p.Expr
	}
	agg, ok := expr.(*parser.AggregateExpr)
	if !ok {
		return nil
	}
	switch {
	case agg.Without && slices.Contains(agg.Grouping, label):
		return fmt.Errorf("aggregates without (%s), but results are keyed by label %q", strings.Join(agg.Grouping, ", "), label)
	case !agg.Without && !slices.Contains(agg.Grouping, label):
		return fmt.Errorf("aggregates by (%s), which drops label %q that results are keyed by; add it to by (...)", strings.Join(agg.Grouping, ", "), label)
	}
	return nil
}
