// Package adapter answers custom.metrics.k8s.io and external.metrics.k8s.io requests
// by running the PromQL that package naming builds against Prometheus.
package adapter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/querylimit"
)

// Options configures a Provider.
type Options struct {
	// Querier reads the default backend (the --prometheus-* flags).
	Querier Querier
	// Backends reads the backends a rule file declares, for the metrics of rules that name one;
	// nil sends every query to Querier.
	Backends Backends
	// Objects resolves label selectors to object names; nil runs without a cluster,
	// answering only requests without a label selector.
	Objects Objects
	Metrics *Metrics
	// MaxRegexBytes bounds the name=~"a|b|..." matcher; longer selections query the
	// whole namespace and filter the result (default 8 KiB, well below the 16 KiB
	// limit of some Prometheus-compatible backends).
	MaxRegexBytes int
	// NameBudget is the size of name=~"a|b|..." up to which the selected objects are always
	// named (a set lookup in Prometheus). Past it, up to MaxRegexBytes, they are named only while
	// the metric's last namespace-wide answer held many more series than objects selected
	// (default 4 KiB).
	NameBudget int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Coalesce, when set, answers the requests for one metric, namespace and metric selector from
	// one shared namespace-wide query no older than the metric's freshness, each filtered to its
	// own objects (package coalesce); nil runs a query per request.
	Coalesce *coalesce.Cache[[]Sample]
	// Freshness is the bound of metrics whose rule sets none; 0 shares only for rules that set one.
	Freshness time.Duration
}

// Provider serves the metrics that a rule set defines. It is safe for concurrent use.
type Provider struct {
	opts  Options
	rules atomic.Pointer[naming.Rules]
	cat   atomic.Pointer[catalog]

	mu         sync.Mutex            // guards discovered, series, listedOnce and builds
	discovered map[string]time.Time  // template series selector + "\x00" + series name → last seen
	listedOnce map[string]bool       // discovery selectors (series queries prefixed "series\x00") listed at least once
	series     map[string]seenSeries // for Rules.Series: query, name and label names → the series
	wide       *wideStats            // series per namespace-wide answer, per metric and namespace
	builds     uint64                // catalogs built so far; stamps each catalog with its snapshot order

	beforeStore func() // test hook: runs between building a catalog and storing it
}

// seenSeries is a series listed for prometheus-adapter rules, and when it was last seen.
type seenSeries struct {
	naming.SeriesLabels
	at time.Time
}

var (
	_ provider.CustomMetricsProvider   = (*Provider)(nil)
	_ provider.ExternalMetricsProvider = (*Provider)(nil)
)

// NewProvider serves rules; fixed-name metrics are listed at once, discovered ones after Discover.
func NewProvider(opts Options, rules *naming.Rules) *Provider {
	if opts.MaxRegexBytes <= 0 {
		opts.MaxRegexBytes = 8 << 10
	}
	if opts.NameBudget <= 0 {
		opts.NameBudget = 4 << 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Provider{opts: opts, discovered: map[string]time.Time{}, listedOnce: map[string]bool{}, series: map[string]seenSeries{}, wide: newWideStats(4096)}
	p.SetRules(rules)
	return p
}

// SetRules replaces the served rules; requests in flight finish with the rules they started with.
func (p *Provider) SetRules(rules *naming.Rules) {
	p.rules.Store(rules)
	p.rebuild()
}

// rebuild recomputes the catalog from the rules and the discovered series names. The rules and
// the discovered names are read together under the lock, and the catalog is stamped with the order
// of that snapshot: a rebuild that read older rules (a relist racing a reload) never replaces the
// catalog of a later one.
func (p *Provider) rebuild() {
	p.mu.Lock()
	rules := p.rules.Load()
	p.builds++
	seq := p.builds
	metrics := slices.Clone(rules.Metrics)
	pending := false
	for _, t := range rules.Templates {
		pending = pending || !p.listedOnce[DiscoveryKey(t)]
		prefix := DiscoveryKey(t) + "\x00"
		for key := range p.discovered {
			if series, ok := strings.CutPrefix(key, prefix); ok {
				if m, ok := t.Expand(series); ok {
					metrics = append(metrics, m)
				}
			}
		}
	}
	if rules.Series != nil {
		current := map[string]bool{}
		for _, q := range rules.Series.SeriesQueries() {
			current[q] = true
			pending = pending || !p.listedOnce["series\x00"+q]
		}
		var listed []naming.SeriesLabels
		for _, s := range p.series {
			if current[s.Query] {
				listed = append(listed, s.SeriesLabels)
			}
		}
		sort.Slice(listed, func(i, j int) bool { return seriesKey(listed[i]) < seriesKey(listed[j]) })
		metrics = append(metrics, rules.Series.ExpandSeries(listed)...)
	}
	p.mu.Unlock()
	c := newCatalog(metrics)
	c.seq, c.pending = seq, pending
	if p.beforeStore != nil {
		p.beforeStore()
	}
	for {
		cur := p.cat.Load()
		if cur != nil && cur.seq > seq {
			return // a newer snapshot is already served
		}
		if p.cat.CompareAndSwap(cur, c) {
			break
		}
	}
	p.opts.Metrics.served(len(c.list), len(c.extList))
}

// ListAllMetrics implements provider.CustomMetricsProvider.
func (p *Provider) ListAllMetrics() []provider.CustomMetricInfo {
	return p.cat.Load().list
}

// ListAllExternalMetrics implements provider.ExternalMetricsProvider.
func (p *Provider) ListAllExternalMetrics() []provider.ExternalMetricInfo {
	return p.cat.Load().extList
}

// GetMetricByName implements provider.CustomMetricsProvider: one object's value.
func (p *Provider) GetMetricByName(ctx context.Context, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	start := p.opts.Now()
	v, err := p.metricByName(ctx, name, info, metricSelector)
	p.opts.Metrics.observeRequest("object", codeOf(err), p.opts.Now().Sub(start))
	return v, err
}

// GetMetricBySelector implements provider.CustomMetricsProvider: the values of every selected object.
func (p *Provider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	start := p.opts.Now()
	v, err := p.metricBySelector(ctx, namespace, selector, info, metricSelector)
	kind := "object"
	if info.GroupResource.Resource == "pods" && info.GroupResource.Group == "" {
		kind = "pods"
	}
	p.opts.Metrics.observeRequest(kind, codeOf(err), p.opts.Now().Sub(start))
	return v, err
}

// GetExternalMetric implements provider.ExternalMetricsProvider.
func (p *Provider) GetExternalMetric(ctx context.Context, namespace string, metricSelector labels.Selector, info provider.ExternalMetricInfo) (*external_metrics.ExternalMetricValueList, error) {
	start := p.opts.Now()
	v, err := p.external(ctx, namespace, metricSelector, info)
	p.opts.Metrics.observeRequest("external", codeOf(err), p.opts.Now().Sub(start))
	return v, err
}

func (p *Provider) find(info provider.CustomMetricInfo) (*naming.Metric, error) {
	c := p.cat.Load()
	m := c.lookup(info.GroupResource, info.Metric)
	if m == nil {
		return nil, p.notFound(info)
	}
	if m.Resource.Namespaced != info.Namespaced {
		how := "namespaced; ask under /namespaces/<namespace>/"
		if !m.Resource.Namespaced {
			how = "cluster-scoped; ask without a namespace"
		}
		return nil, newStatus(http.StatusNotFound, metav1.StatusReasonNotFound,
			"metric %q describes %s, which are %s", info.Metric, m.Resource.GroupResource, how)
	}
	return m, nil
}

func (p *Provider) notFound(info provider.CustomMetricInfo) error {
	return newStatus(http.StatusNotFound, metav1.StatusReasonNotFound, "%s", p.NotServed(info))
}

// NotServed says why a custom metric is not served: the closest names served for that resource
// (a resource without a group matches the grouped one), where else it is served, or what is.
func (p *Provider) NotServed(info provider.CustomMetricInfo) string {
	c := p.cat.Load()
	var here, where, all []string
	for _, i := range c.list {
		all = append(all, i.GroupResource.String()+"/"+i.Metric)
		switch {
		case i.GroupResource == info.GroupResource,
			info.GroupResource.Group == "" && i.GroupResource.Resource == info.GroupResource.Resource:
			here = append(here, i.Metric)
		case i.Metric == info.Metric:
			where = append(where, i.GroupResource.String())
		}
	}
	msg := fmt.Sprintf("metric %q is not served for %s", info.Metric, info.GroupResource)
	switch {
	case len(here) > 0:
		msg += "; closest served: " + strings.Join(nearest(info.Metric, here), ", ")
	case len(where) > 0:
		msg += "; it is served for " + strings.Join(where, ", ")
	case len(all) > 0:
		msg += "; served: " + strings.Join(nearest(info.Metric, all), ", ")
	default:
		msg += "; no custom metrics are served (check the rule file)"
	}
	return msg
}

// NotServedExternal says why an external metric is not served, naming the closest served ones.
func (p *Provider) NotServedExternal(name string) string {
	c := p.cat.Load()
	names := make([]string, 0, len(c.extList))
	for _, e := range c.extList {
		names = append(names, e.Metric)
	}
	msg := fmt.Sprintf("external metric %q is not served", name)
	if len(names) == 0 {
		return msg + "; no external metrics are served (check the rule file)"
	}
	return msg + "; closest served: " + strings.Join(nearest(name, names), ", ")
}

func (p *Provider) metricByName(ctx context.Context, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	if err := p.checkRequest(info.GroupResource, name.Namespace, []string{name.Name}, metricSelector); err != nil {
		return nil, err
	}
	m, err := p.find(info)
	if err != nil {
		return nil, err
	}
	sel := naming.Selection{Namespace: name.Namespace, Names: []string{name.Name}, Selector: metricSelector}
	if p.freshness(m) > 0 {
		sel.Names = nil // one namespace-wide answer, shared by every object's request, filtered to this one
	}
	items, query, err := p.values(ctx, m, sel, []string{name.Name}, "")
	if err != nil {
		return nil, err
	}
	for i := range items {
		if items[i].DescribedObject.Name == name.Name {
			return &items[i], nil
		}
	}
	obj := name.Name
	if name.Namespace != "" {
		obj = name.Namespace + "/" + name.Name
	}
	return nil, newStatus(http.StatusNotFound, metav1.StatusReasonNotFound,
		"metric %q has no sample for %s %s (query: %s)", m.Name, m.Resource.GroupResource, obj, query)
}

func (p *Provider) metricBySelector(ctx context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	if err := p.checkRequest(info.GroupResource, namespace, nil, metricSelector); err != nil {
		return nil, err
	}
	m, err := p.find(info)
	if err != nil {
		return nil, err
	}
	sel := naming.Selection{Namespace: namespace, Selector: metricSelector}
	var names []string    // the objects the answer may describe; nil: any the query returns
	var wideKeyFor string // set when the query is namespace-wide: where to note its series count
	if p.opts.Objects != nil {
		var total int
		names, total, err = p.opts.Objects.Names(ctx, m.Resource, namespace, selector)
		if err != nil {
			return nil, newStatus(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
				"cannot list %s to answer metric %q: %v", m.Resource.GroupResource, m.Name, err)
		}
		if len(names) == 0 {
			return &custom_metrics.MetricValueList{}, nil
		}
		key := wideKey(m, namespace, sel)
		if p.freshness(m) > 0 {
			wideKeyFor = key // one namespace-wide answer, shared by every selection's request, filtered to these
		} else if last, known := p.wide.get(key, p.opts.Now()); NameObjects(regexBytes(names), len(names), total, p.opts.NameBudget, p.opts.MaxRegexBytes, last, known) {
			sel.Names = names
		} else if m.NeedsNames {
			return p.namedInParts(ctx, m, sel, names) // its query must name every object: split past the cap
		} else {
			wideKeyFor = key
		}
	} else if selector != nil && !selector.Empty() {
		return nil, newStatus(http.StatusBadRequest, metav1.StatusReasonBadRequest,
			"label selector %q needs a Kubernetes connection to find objects; the adapter runs without one (--lister-kubeconfig)", selector)
	} else if m.NeedsNames {
		return nil, newStatus(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			"metric %q (rule %d): its metricsQuery reads .LabelValuesByName, so it needs the names of the objects, which the adapter cannot list without a Kubernetes connection (--lister-kubeconfig); ask for one object by name instead", m.Name, m.RuleIndex)
	}
	items, _, err := p.values(ctx, m, sel, names, wideKeyFor)
	if err != nil {
		return nil, err
	}
	return &custom_metrics.MetricValueList{Items: items}, nil
}

// regexBytes is the size of the name=~"a|b|..." matcher's value, measured after escaping.
func regexBytes(names []string) int {
	return naming.EscapedBytes(names)
}

// checkRequest refuses, with 400 and before any query is built, a namespace or object name that
// Kubernetes could not hold and a metric selector on __name__ or with an oversized value list.
func (p *Provider) checkRequest(gr schema.GroupResource, namespace string, names []string, metricSelector labels.Selector) error {
	bad := func(err error) error {
		return newStatus(http.StatusBadRequest, metav1.StatusReasonBadRequest, "%v", err)
	}
	if err := naming.ValidateNamespace(namespace); err != nil {
		return bad(err)
	}
	for _, n := range names {
		if err := naming.ValidateObjectName(gr, n); err != nil {
			return bad(err)
		}
	}
	if err := naming.ValidateSelector(metricSelector, p.opts.MaxRegexBytes); err != nil {
		return bad(err)
	}
	return nil
}

// values runs the metric's query for sel and converts the samples of the allowed objects. When
// wideKey is set the query was namespace-wide, and its series count is noted under that key.
func (p *Provider) values(ctx context.Context, m *naming.Metric, sel naming.Selection, allowed []string, wideKey string) ([]custom_metrics.MetricValue, string, error) {
	ctx = withRule(ctx, m)
	query, err := m.Build(sel)
	if err != nil {
		return nil, "", buildFailed(m, err)
	}
	klog.V(4).InfoS("querying", "metric", m.Name, "query", query)
	metricID := custom_metrics.MetricIdentifier{Name: m.Name, Selector: selectorOf(sel.Selector)}
	ref := func(name string) custom_metrics.ObjectReference {
		return custom_metrics.ObjectReference{Kind: m.Resource.Kind, APIVersion: m.Resource.GroupVersion(), Namespace: sel.Namespace, Name: name}
	}
	q, err := p.querier(m.Backend)
	if err != nil {
		return nil, query, err
	}
	samples, err := p.objectSamples(ctx, q, m, sel, query)
	if err != nil {
		if m.Fallback == nil || allowed == nil {
			return nil, query, p.queryFailed(m, query, err)
		}
		klog.V(2).InfoS("serving fallback", "metric", m.Name, "err", err)
		p.opts.Metrics.fallback(m.Name)
		items := make([]custom_metrics.MetricValue, 0, len(allowed))
		for _, n := range sortedUnique(allowed) {
			items = append(items, custom_metrics.MetricValue{DescribedObject: ref(n), Metric: metricID,
				Timestamp: metav1.NewTime(p.opts.Now()), WindowSeconds: m.Window, Value: m.Fallback.DeepCopy()})
		}
		return items, query, nil
	}
	if wideKey != "" {
		p.wide.put(wideKey, len(samples), p.opts.Now())
	}
	keep := samples
	if allowed != nil {
		keep = filterSamples(samples, allowed)
	}
	items := make([]custom_metrics.MetricValue, 0, len(keep))
	var seen map[string]bool
	if len(keep) > 1 {
		seen = make(map[string]bool, len(keep))
	}
	for _, s := range keep {
		name := s.Object
		switch {
		case name == "":
			p.opts.Metrics.skip("unmapped")
			continue
		case seen[name]:
			p.opts.Metrics.skip("duplicate")
			continue
		}
		q, ok := naming.Quantity(s.Value)
		if !ok {
			p.opts.Metrics.skip(nonFinite(s.Value))
			continue
		}
		if seen != nil {
			seen[name] = true
		}
		items = append(items, custom_metrics.MetricValue{DescribedObject: ref(name), Metric: metricID,
			Timestamp: metav1.NewTime(s.Timestamp.Time()), WindowSeconds: m.Window, Value: q})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].DescribedObject.Name < items[j].DescribedObject.Name })
	return items, query, nil
}

// query runs an instant query decoding only label, through the Querier's cheaper path when it has one.
func (p *Provider) query(ctx context.Context, q Querier, query, label string) ([]Sample, error) {
	if lq, ok := q.(LabelQuerier); ok {
		return lq.QueryLabel(ctx, query, label)
	}
	vec, err := q.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, len(vec))
	for i, s := range vec {
		out[i] = Sample{Object: string(s.Metric[model.LabelName(label)]), Value: float64(s.Value), Timestamp: s.Timestamp}
	}
	return out, nil
}

func (p *Provider) external(ctx context.Context, namespace string, metricSelector labels.Selector, info provider.ExternalMetricInfo) (*external_metrics.ExternalMetricValueList, error) {
	if err := p.checkRequest(schema.GroupResource{}, namespace, nil, metricSelector); err != nil {
		return nil, err
	}
	c := p.cat.Load()
	m := c.external[info.Metric]
	if m == nil {
		return nil, newStatus(http.StatusNotFound, metav1.StatusReasonNotFound, "%s", p.NotServedExternal(info.Metric))
	}
	ctx = withRule(ctx, m)
	query, err := m.Build(naming.Selection{Namespace: namespace, Selector: metricSelector})
	if err != nil {
		return nil, buildFailed(m, err)
	}
	klog.V(4).InfoS("querying", "metric", m.Name, "query", query)
	q, err := p.querier(m.Backend)
	if err != nil {
		return nil, err
	}
	samples, err := p.externalSamples(ctx, q, m, query)
	if err != nil {
		if m.Fallback == nil {
			return nil, p.queryFailed(m, query, err)
		}
		klog.V(2).InfoS("serving fallback", "metric", m.Name, "err", err)
		p.opts.Metrics.fallback(m.Name)
		return &external_metrics.ExternalMetricValueList{Items: []external_metrics.ExternalMetricValue{{
			MetricName: m.Name, Timestamp: metav1.NewTime(p.opts.Now()), WindowSeconds: m.Window, Value: m.Fallback.DeepCopy(),
		}}}, nil
	}
	out := &external_metrics.ExternalMetricValueList{Items: make([]external_metrics.ExternalMetricValue, 0, len(samples))}
	for _, s := range samples {
		q, ok := naming.Quantity(s.Value)
		if !ok {
			p.opts.Metrics.skip(nonFinite(s.Value))
			continue
		}
		lbls := make(map[string]string, len(s.Labels))
		for k, v := range s.Labels {
			if k != model.MetricNameLabel || m.KeepNameLabel {
				lbls[string(k)] = string(v)
			}
		}
		out.Items = append(out.Items, external_metrics.ExternalMetricValue{MetricName: m.Name, MetricLabels: lbls,
			Timestamp: metav1.NewTime(s.Timestamp.Time()), WindowSeconds: m.Window, Value: q})
	}
	return out, nil
}

// queryFailed turns a Prometheus failure into a status that says what failed: 500 when
// Prometheus rejected the rule's query, 503 when it was slow, down or failing.
func (p *Provider) queryFailed(m *naming.Metric, query string, err error) error {
	var shed *querylimit.ShedError
	if errors.As(err, &shed) {
		klog.V(2).InfoS("query shed", "metric", m.Name, "rule", m.RuleIndex, "err", err)
		st := newStatus(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "metric %q%s: %v", m.Name, backendNote(m), err)
		st.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
		return st
	}
	klog.V(1).InfoS("prometheus query failed", "metric", m.Name, "rule", m.RuleIndex, "backend", backendKey(m.Backend), "query", query, "err", err)
	if rejected(err) {
		return newStatus(http.StatusInternalServerError, metav1.StatusReasonInternalError,
			"metric %q (rule %d)%s: prometheus rejected the query %s: %v", m.Name, m.RuleIndex, backendNote(m), query, err)
	}
	return newStatus(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
		"metric %q%s: prometheus query failed: %v (query: %s)", m.Name, backendNote(m), err, query)
}

func nonFinite(v float64) string {
	if math.IsNaN(v) {
		return "nan"
	}
	return "inf"
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func selectorOf(sel labels.Selector) *metav1.LabelSelector {
	if sel == nil || sel.Empty() {
		return nil
	}
	ls, err := metav1.ParseToLabelSelector(sel.String())
	if err != nil {
		return nil
	}
	return ls
}

func newStatus(code int, reason metav1.StatusReason, format string, args ...any) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    int32(code),
		Reason:  reason,
		Message: fmt.Sprintf(format, args...),
	}}
}

// codeOf is the HTTP status an error becomes, for telemetry.
func codeOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return int(se.Status().Code)
	}
	return http.StatusInternalServerError
}
