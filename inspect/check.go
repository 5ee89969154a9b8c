package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/model"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
	"github.com/promql-adapter/promql-adapter/version"
)

// CheckOptions bounds a Check.
type CheckOptions struct {
	Lookback time.Duration // how far back discovery lists series (default 10m, the server's --series-max-age)
	Timeout  time.Duration // bound on each query (default 5s, the server's --prometheus-timeout)
	// Backends reads the backends the rule file declares; nil runs every rule against the Querier given.
	Backends adapter.Backends
}

// Metric statuses in a MetricReport.
const (
	StatusOK        = "ok"        // the query returned samples that map to objects
	StatusBroken    = "broken"    // the query failed, returned nothing, or nothing maps to an object
	StatusShadowed  = "shadowed"  // an earlier rule serves the same metric name and resource
	StatusUnchecked = "unchecked" // the query needs object names, so it cannot run for every object
)

// maxSamples is how many objects a MetricReport shows values for.
const maxSamples = 5

// Report is what every rule of a rule file serves against one Prometheus.
type Report struct {
	Rules []RuleReport `json:"rules"`
}

// RuleReport is one rule: the metrics it yields and, when it serves nothing, why.
type RuleReport struct {
	Rule      string         `json:"rule"`               // its place in the file, e.g. "metrics[2]", "externalRules[0]"; empty when unknown
	Backend   string         `json:"backend,omitempty"`  // the declared backend it reads; empty for the default
	Kind      string         `json:"kind"`               // KindMetric, KindDiscover or KindPrometheusAdapter
	Selector  string         `json:"selector,omitempty"` // the series selector discovery lists with
	Describes string         `json:"describes"`          // group-resource, or "external"; empty when unknown
	Metrics   []MetricReport `json:"metrics"`            // the metrics it yields, in name order
	Broken    bool           `json:"broken"`             // its query errors, or it yields nothing
	Why       string         `json:"why,omitempty"`      // why it is broken
}

// MetricReport is one metric a rule yields and what its query returns for every object.
type MetricReport struct {
	Name      string   `json:"name"`
	Describes string   `json:"describes"`        // group-resource, or "external"
	Series    string   `json:"series,omitempty"` // the discovered series it was expanded from
	Query     string   `json:"query"`            // the PromQL run: the rule's query with no matcher injected
	Status    string   `json:"status"`           // StatusOK, StatusBroken, StatusShadowed or StatusUnchecked
	Why       string   `json:"why,omitempty"`
	Objects   int      `json:"objects"`             // objects (external: series) the adapter would serve a value for
	Samples   []Sample `json:"samples"`             // the first few, by object
	Unmapped  int      `json:"unmapped,omitempty"`  // samples without the label naming the object
	NonFinite int      `json:"nonFinite,omitempty"` // NaN or ±Inf samples, which the adapter leaves out
}

// Sample is one object's value.
type Sample struct {
	Object string `json:"object"` // namespace/name, name, or an external series' labels
	Value  string `json:"value"`  // the quantity the HPA reads, e.g. 250m
}

// Broken reports whether any rule's query errors or any rule yields nothing.
func (r *Report) Broken() bool {
	for _, rr := range r.Rules {
		if rr.Broken {
			return true
		}
	}
	return false
}

// Check builds a Provider over q, runs its discovery once, then runs every metric every rule
// yields for all objects and reports what each serves or why it serves nothing.
func Check(ctx context.Context, rules *naming.Rules, q adapter.Querier, opts CheckOptions) (*Report, error) {
	if opts.Lookback <= 0 {
		opts.Lookback = 10 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	rec := &recorder{Querier: q, errs: map[string]error{}}
	popts := adapter.Options{Querier: rec}
	if opts.Backends != nil {
		popts.Backends = recordingBackends{opts.Backends, rec}
	}
	p := adapter.NewProvider(popts, rules)
	// Failures are per selector, and recorded: they become the whys of the rules concerned.
	_ = p.Discover(ctx, opts.Lookback, opts.Lookback)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("check: discovery: %w", err)
	}
	s, err := servedMetrics(p, rules)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}

	c := &checker{q: q, backends: opts.Backends, timeout: opts.Timeout, s: s, rec: rec}
	var out []RuleReport
	if rules.Series == nil {
		out = c.native(ctx, rules)
	} else {
		out = c.prometheusAdapter(ctx, rules)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	for i := range out {
		finishRule(&out[i])
	}
	return &Report{Rules: out}, nil
}

type checker struct {
	q        adapter.Querier
	backends adapter.Backends // nil: every rule reads q
	timeout  time.Duration
	s        *served
	rec      *recorder
}

// native reports the rules of a native rule file, in file order.
func (c *checker) native(ctx context.Context, rules *naming.Rules) []RuleReport {
	type slot struct {
		index int
		m     *naming.Metric
		t     *naming.Template
	}
	var slots []slot
	for _, m := range rules.Metrics {
		slots = append(slots, slot{index: m.RuleIndex, m: m})
	}
	for _, t := range rules.Templates {
		slots = append(slots, slot{index: t.RuleIndex, t: t})
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i].index < slots[j].index })
	out := make([]RuleReport, 0, len(slots))
	for _, sl := range slots {
		o := origin{section: sectionMetrics, index: sl.index, kind: KindMetric}
		rr := RuleReport{Rule: o.ref(), Kind: KindMetric}
		if sl.m != nil {
			rr.Backend = sl.m.Backend
			rr.Describes = describes(sl.m)
			rr.Metrics = c.metrics(ctx, o)
			out = append(out, rr)
			continue
		}
		t := sl.t
		rr.Kind, rr.Selector, rr.Backend = KindDiscover, t.Series, t.Backend()
		rr.Describes = t.Resource().GroupResource.String()
		if rr.Describes == "" {
			rr.Describes = naming.External
		}
		o.kind = KindDiscover
		rr.Metrics = c.metrics(ctx, o)
		if len(rr.Metrics) == 0 {
			names := c.s.names[adapter.DiscoveryKey(t)]
			switch err := c.rec.err(t.Series); {
			case err != nil:
				rr.Why = fmt.Sprintf("discovery error: %v (selector %s)", err, t.Series)
			case len(names) == 0:
				rr.Why = "no series match " + t.Series
			default:
				rr.Why = fmt.Sprintf("%d series match %s (%s), but discover.matches accepts none", len(names), t.Series, listSome(names))
			}
		}
		out = append(out, rr)
	}
	return out
}

// prometheusAdapter reports the rules of a prometheus-adapter config that yield metrics, then
// each seriesQuery that yields none (naming.SeriesRules does not enumerate its rules).
func (c *checker) prometheusAdapter(ctx context.Context, rules *naming.Rules) []RuleReport {
	var keys []ruleKey
	seen := map[ruleKey]bool{}
	for _, e := range c.s.entries {
		if e.origin.kind != KindPrometheusAdapter {
			continue
		}
		k := ruleKey{e.origin.section, e.origin.index}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	unusable := map[ruleKey]pacompat.Unusable{}
	var resourceParts []RuleReport // unusable parts of resourceRules: metrics.k8s.io requests that need them fail
	for _, u := range pacompat.UnusableRules(rules) {
		if u.Section == pacompat.SectionResourceRules {
			resourceParts = append(resourceParts, RuleReport{Rule: u.Rule(), Kind: KindPrometheusAdapter, Describes: "metrics.k8s.io",
				Metrics: []MetricReport{}, Why: "unusable rule: " + oneLine(u.Err.Error()) + " (the metrics.k8s.io requests that need it fail)"})
			continue
		}
		k := ruleKey{u.Section, u.Index}
		unusable[k] = u
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].section != keys[j].section {
			return keys[i].section == pacompat.SectionRules // rules before externalRules, as in the file
		}
		return keys[i].index < keys[j].index
	})
	var out []RuleReport
	for _, k := range keys {
		o := origin{section: k.section, index: k.index, kind: KindPrometheusAdapter}
		rr := RuleReport{Rule: o.ref(), Kind: KindPrometheusAdapter, Selector: c.s.queryOf[k]}
		rr.Metrics = c.metrics(ctx, o)
		rr.Describes = describesAll(rr.Metrics)
		if u, ok := unusable[k]; ok {
			markUnusable(&rr, u)
		}
		out = append(out, rr)
	}
	for _, q := range rules.Series.SeriesQueries() {
		n, silent := c.s.silent[q]
		if !silent {
			continue
		}
		rr := RuleReport{Kind: KindPrometheusAdapter, Selector: q, Metrics: []MetricReport{}}
		switch err := c.rec.err(q); {
		case err != nil:
			rr.Why = fmt.Sprintf("discovery error: %v (seriesQuery %s)", err, q)
		case n == 0:
			rr.Why = "no series match " + q
		default:
			rr.Why = fmt.Sprintf("%d series match %s, but no rule's seriesFilters, name.matches and resources turn them into a metric", n, q)
		}
		out = append(out, rr)
	}
	return append(out, resourceParts...)
}

// markUnusable marks a rule the server loads as unusable, and each metric it lists, BROKEN with the reason.
func markUnusable(rr *RuleReport, u pacompat.Unusable) {
	why := "unusable rule: " + oneLine(u.Err.Error())
	if rr.Selector == "" {
		rr.Selector = u.SeriesQuery
	}
	if len(rr.Metrics) == 0 {
		rr.Why = why
		if u.Discovers {
			rr.Why += " (its seriesQuery yields no metric now; once it does, requests for them fail)"
		} else {
			rr.Why += " (it serves no metric)"
		}
		return
	}
	for i := range rr.Metrics {
		m := &rr.Metrics[i]
		m.Status, m.Why = StatusBroken, why+"; requests for this metric fail"
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// describesAll joins the distinct resources of a rule's metrics.
func describesAll(ms []MetricReport) string {
	var out []string
	for _, m := range ms {
		if !slices.Contains(out, m.Describes) {
			out = append(out, m.Describes)
		}
	}
	return strings.Join(out, ",")
}

// metrics checks the metrics rule o yields, in name order.
func (c *checker) metrics(ctx context.Context, o origin) []MetricReport {
	var es []*entry
	for _, e := range c.s.entries {
		if e.origin.section == o.section && e.origin.index == o.index {
			es = append(es, e)
		}
	}
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].metric.Name != es[j].metric.Name {
			return es[i].metric.Name < es[j].metric.Name
		}
		return describes(es[i].metric) < describes(es[j].metric)
	})
	out := make([]MetricReport, 0, len(es))
	for _, e := range es {
		out = append(out, c.metric(ctx, e))
	}
	return out
}

// metric runs one metric's query for every object, as the adapter builds it, and maps the samples
// to objects by the metric's labels as the adapter does.
func (c *checker) metric(ctx context.Context, e *entry) MetricReport {
	m := e.metric
	mr := MetricReport{Name: m.Name, Describes: describes(m), Series: e.origin.series, Samples: []Sample{}}
	query, err := m.Build(naming.Selection{})
	if err != nil {
		if _, named := m.Build(naming.Selection{Names: []string{"x"}}); named == nil {
			mr.Status, mr.Why = StatusUnchecked, fmt.Sprintf("its query needs object names, so it cannot run for every object: %v", err)
		} else {
			mr.Status, mr.Why = StatusBroken, fmt.Sprintf("the adapter cannot build its query: %v", err)
		}
		return mr
	}
	mr.Query = query
	if e.shadowedBy != nil {
		mr.Status = StatusShadowed
		mr.Why = fmt.Sprintf("not served: %s serves %s for %s first", e.shadowedBy.ref(), m.Name, mr.Describes)
		return mr
	}
	q, err := c.querier(m.Backend)
	if err != nil {
		mr.Status, mr.Why = StatusBroken, err.Error()
		return mr
	}
	qctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	vec, err := q.Query(qctx, query)
	if err != nil {
		mr.Status, mr.Why = StatusBroken, "query error: "+err.Error()
		return mr
	}
	if len(vec) == 0 {
		mr.Status, mr.Why = StatusBroken, "the query returned no samples"
		return mr
	}
	values := map[string]string{}
	for _, smp := range vec {
		obj := objectOf(m, smp.Metric)
		if obj == "" {
			mr.Unmapped++
			continue
		}
		q, ok := naming.Quantity(float64(smp.Value))
		if !ok {
			mr.NonFinite++
			continue
		}
		if _, dup := values[obj]; !dup {
			values[obj] = q.String()
		}
	}
	objs := make([]string, 0, len(values))
	for o := range values {
		objs = append(objs, o)
	}
	sort.Strings(objs)
	mr.Objects = len(objs)
	for _, o := range objs[:min(len(objs), maxSamples)] {
		mr.Samples = append(mr.Samples, Sample{Object: o, Value: values[o]})
	}
	switch {
	case mr.Objects > 0:
		mr.Status = StatusOK
	case mr.Unmapped > 0:
		mr.Status = StatusBroken
		mr.Why = fmt.Sprintf("samples carry no %s label, so no object can be mapped (%d samples, e.g. %s)", m.NameLabel, mr.Unmapped, vec[0].Metric)
	default:
		mr.Status = StatusBroken
		mr.Why = fmt.Sprintf("every sample is NaN or ±Inf (%d), which the adapter leaves out", mr.NonFinite)
	}
	return mr
}

// querier is the Querier of backend name ("" is the default).
func (c *checker) querier(name string) (adapter.Querier, error) {
	if name == "" {
		return c.q, nil
	}
	if c.backends != nil {
		if q, ok := c.backends.Querier(name); ok {
			return q, nil
		}
	}
	return nil, fmt.Errorf("backend %q is not available", name)
}

// objectOf names the object a sample describes: namespace/name by the metric's labels, or for an
// external metric the series' labels; empty when the sample carries no name label.
func objectOf(m *naming.Metric, l model.Metric) string {
	if m.External {
		c := l.Clone()
		delete(c, model.MetricNameLabel)
		return c.String()
	}
	name := string(l[model.LabelName(m.NameLabel)])
	if name == "" {
		return ""
	}
	if ns := string(l[model.LabelName(m.NSLabel)]); m.NSLabel != "" && ns != "" {
		return ns + "/" + name
	}
	return name
}

// finishRule decides whether a rule is broken and why.
func finishRule(rr *RuleReport) {
	if rr.Metrics == nil {
		rr.Metrics = []MetricReport{}
	}
	served, unchecked := 0, 0
	var firstBroken *MetricReport
	for i := range rr.Metrics {
		m := &rr.Metrics[i]
		switch m.Status {
		case StatusOK:
			served++
		case StatusUnchecked:
			unchecked++
		case StatusBroken:
			if firstBroken == nil {
				firstBroken = m
			}
		}
	}
	switch {
	case rr.Why != "":
		rr.Broken = true
	case firstBroken != nil:
		rr.Broken = true
		rr.Why = firstBroken.Why
		if len(rr.Metrics) > 1 {
			rr.Why = firstBroken.Name + ": " + rr.Why
		}
	case served == 0 && unchecked == 0:
		rr.Broken = true
		rr.Why = "every metric it yields is served by an earlier rule"
	}
}

// listSome joins up to five values.
func listSome(s []string) string {
	if len(s) <= maxSamples {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:maxSamples], ", ") + fmt.Sprintf(", and %d more", len(s)-maxSamples)
}

// WriteTable writes the report as aligned columns: rule, metric, describes, objects, sample, status.
func (r *Report) WriteTable(w io.Writer) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	row := func(cells ...string) {
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	row("RULE", "METRIC", "DESCRIBES", "OBJECTS", "SAMPLE", "STATUS")
	broken := 0
	for _, rr := range r.Rules {
		if rr.Broken {
			broken++
		}
		rule := rr.Rule
		if rule == "" {
			rule = "?"
		}
		if rr.Backend != "" {
			rule += " (backend " + rr.Backend + ")"
		}
		if len(rr.Metrics) == 0 {
			row(rule, "-", orDash(rr.Describes), "0", "-", "BROKEN: "+rr.Why)
			continue
		}
		for _, m := range rr.Metrics {
			objects, first := strconv.Itoa(m.Objects), "-"
			if m.Status == StatusUnchecked || m.Status == StatusShadowed {
				objects = "-"
			}
			if len(m.Samples) > 0 {
				first = m.Samples[0].Object + "=" + m.Samples[0].Value
			}
			row(rule, m.Name, m.Describes, objects, first, statusText(m))
			var more []string
			for _, s := range m.Samples[min(1, len(m.Samples)):] {
				more = append(more, s.Object+"="+s.Value)
			}
			if m.Objects > len(m.Samples) {
				more = append(more, fmt.Sprintf("(%d more)", m.Objects-len(m.Samples)))
			}
			for _, s := range more {
				row("", "", "", "", s, "")
			}
			if m.Status == StatusBroken && m.Query != "" {
				row("", "", "", "", "", "query: "+m.Query)
			}
		}
	}
	fmt.Fprintf(tw, "\n%d rules, %d broken\n", len(r.Rules), broken)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write check table: %w", err)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \n")
		if strings.HasSuffix(l, "\n") {
			lines[i] += "\n"
		}
	}
	if _, err := io.WriteString(w, strings.Join(lines, "")); err != nil {
		return fmt.Errorf("write check table: %w", err)
	}
	return nil
}

func statusText(m MetricReport) string {
	switch m.Status {
	case StatusOK:
		if m.Unmapped+m.NonFinite > 0 {
			return fmt.Sprintf("ok (%d samples left out: %d without label, %d NaN/Inf)", m.Unmapped+m.NonFinite, m.Unmapped, m.NonFinite)
		}
		return "ok"
	case StatusBroken:
		return "BROKEN: " + m.Why
	default:
		return m.Status + ": " + m.Why
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteJSON writes the report as indented JSON: {"adapter": {version...}, "broken": bool, "rules": [...]}.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	err := enc.Encode(struct {
		Adapter version.Info `json:"adapter"`
		Broken  bool         `json:"broken"`
		Rules   []RuleReport `json:"rules"`
	}{version.Get(), r.Broken(), nonNil(r.Rules)})
	if err != nil {
		return fmt.Errorf("write check JSON: %w", err)
	}
	return nil
}

func nonNil(r []RuleReport) []RuleReport {
	if r == nil {
		return []RuleReport{}
	}
	return r
}

// recorder is the provider's Querier during a Check: it remembers which discovery selectors failed.
type recorder struct {
	adapter.Querier
	mu   sync.Mutex
	errs map[string]error
}

// SeriesNames implements adapter.Querier and records the outcome per selector.
func (r *recorder) SeriesNames(ctx context.Context, selector string, since time.Time) ([]string, error) {
	names, err := r.Querier.SeriesNames(ctx, selector, since)
	r.record(selector, err)
	return names, err
}

// Series implements adapter.Querier and records the outcome per selector.
func (r *recorder) Series(ctx context.Context, selector string, since time.Time) ([]naming.SeriesLabels, error) {
	s, err := r.Querier.Series(ctx, selector, since)
	r.record(selector, err)
	return s, err
}

// recordingBackends hands out the declared backends' Queriers wrapped in a recorder that shares rec's record.
type recordingBackends struct {
	adapter.Backends
	rec *recorder
}

// Querier implements adapter.Backends.
func (b recordingBackends) Querier(name string) (adapter.Querier, bool) {
	q, ok := b.Backends.Querier(name)
	if !ok {
		return nil, false
	}
	return &backendRecorder{Querier: q, rec: b.rec}, true
}

// backendRecorder is a declared backend's Querier that records discovery outcomes in rec.
type backendRecorder struct {
	adapter.Querier
	rec *recorder
}

// SeriesNames implements adapter.Querier and records the outcome per selector.
func (r *backendRecorder) SeriesNames(ctx context.Context, selector string, since time.Time) ([]string, error) {
	names, err := r.Querier.SeriesNames(ctx, selector, since)
	r.rec.record(selector, err)
	return names, err
}

func (r *recorder) record(selector string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[selector] = err
}

func (r *recorder) err(selector string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[selector]
}
