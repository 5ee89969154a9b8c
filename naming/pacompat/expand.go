package pacompat

import (
	"cmp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/promql-adapter/promql-adapter/naming"
)

// Series is one series /api/v1/series returned, reduced to its name and label names.
type Series struct {
	// Query is the seriesQuery it was listed with (one of Rules.SeriesQueries): a rule sees only its own query's series.
	Query string
	// Name is the series' metric name (__name__).
	Name string
	// Labels are the names of its other labels; a label Prometheus returned is a label with a non-empty value.
	Labels []string
}

// Metric is one served metric: a name on one resource, or an external metric, and how to query it.
type Metric struct {
	// Name is the metric name in the API.
	Name string
	// External is true for external.metrics.k8s.io metrics, false for custom.metrics.k8s.io ones.
	External bool
	// Resource is what the metric describes (zero for external metrics).
	Resource naming.Resource
	// Namespaced is prometheus-adapter's flag: true for every resource but namespaces, nodes and
	// persistentvolumes; for external metrics, the rule's resources.namespaced (default true).
	Namespaced bool
	// Series is the Prometheus series name, <<.Series>> in the query.
	Series string
	// RuleIndex is the position of the rule in its section (rules, or externalRules when External).
	RuleIndex int

	rule      *rule
	nameLabel string // label holding object names (custom metrics)
	labelErr  error  // why there is no nameLabel
	nsLabel   string // label holding the namespace
	nsErr     error  // why there is no nsLabel
}

// NameLabel is the label holding the described object's name, by which result samples map back to
// objects; empty for external metrics.
func (m *Metric) NameLabel() string { return m.nameLabel }

// NamespaceLabel is the label the request's namespace is matched on; empty when no namespace matcher
// is ever added (cluster-scoped resources, external metrics with namespaced: false, unmapped namespace).
func (m *Metric) NamespaceLabel() string { return m.nsLabel }

// Expand is prometheus-adapter's discovery: every rule sees the series of its seriesQuery, keeps those
// its seriesFilters and name.matches accept, names them with name.as, and (custom rules) maps their
// labels to resources. The result has one Metric per metric name and resource (per name, for external
// metrics), sorted. When several series or rules yield the same metric, the last one in rule order, then
// series order, wins, as in prometheus-adapter; pass series in the order Prometheus returned them.
// Unlike prometheus-adapter, Expand skips series whose name is not a classic metric name (no metricsQuery
// could select them by name) and metric names that expand to nothing (no request could name them).
func (r *Rules) Expand(series []Series) []Metric {
	byQuery := map[string][]Series{}
	for _, s := range lastOccurrences(series) {
		byQuery[s.Query] = append(byQuery[s.Query], s)
	}
	type key struct {
		name       string
		gr         schema.GroupResource
		namespaced bool
	}
	custom := map[key]Metric{}
	cache := map[string]*naming.Resource{}
	for _, ru := range r.custom {
		for _, s := range byQuery[ru.seriesQuery] {
			name, ok := ru.metricName(s.Name)
			if !ok {
				continue
			}
			resources, namespaced := ru.conv.resourcesFor(s.Labels, cache)
			for _, res := range resources {
				ns := namespaced
				if alwaysClusterScoped(res.GroupResource) {
					ns = false
				}
				custom[key{name, res.GroupResource, ns}] = ru.metric(name, s.Name, res, ns)
			}
		}
	}
	external := map[string]Metric{}
	for _, ru := range r.external {
		for _, s := range byQuery[ru.seriesQuery] {
			if name, ok := ru.metricName(s.Name); ok {
				external[name] = ru.metric(name, s.Name, naming.Resource{}, ru.namespaced)
			}
		}
	}
	out := make([]Metric, 0, len(custom)+len(external))
	for _, m := range custom {
		out = append(out, m)
	}
	for _, m := range external {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Metric) int {
		if a.External != b.External {
			if a.External {
				return 1
			}
			return -1
		}
		return cmp.Or(
			strings.Compare(a.Name, b.Name),
			strings.Compare(a.Resource.GroupResource.Group, b.Resource.GroupResource.Group),
			strings.Compare(a.Resource.GroupResource.Resource, b.Resource.GroupResource.Resource),
			cmpBool(a.Namespaced, b.Namespaced),
		)
	})
	return out
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// lastOccurrences drops series that recur later with the same query, name and label names; the
// outcome of last-wins discovery is unchanged, the work is not repeated.
func lastOccurrences(series []Series) []Series {
	seen := make(map[string]bool, len(series))
	keep := make([]Series, 0, len(series))
	for i := len(series) - 1; i >= 0; i-- {
		s := series[i]
		labels := slices.Clone(s.Labels)
		slices.Sort(labels)
		k := s.Query + "\xff" + s.Name + "\xff" + strings.Join(slices.Compact(labels), "\xff")
		if seen[k] {
			continue
		}
		seen[k] = true
		keep = append(keep, s)
	}
	slices.Reverse(keep)
	return keep
}

// metricName applies the rule's filters and name mapping to a series name.
func (ru *rule) metricName(series string) (string, bool) {
	if !naming.IsMetricName(series) {
		return "", false // prometheus-adapter would serve it, but no query can select it by name
	}
	for _, f := range ru.filters {
		if !f.matches(series) {
			return "", false
		}
	}
	idx := ru.nameRE.FindStringSubmatchIndex(series)
	if idx == nil {
		return "", false
	}
	name := string(ru.nameRE.ExpandString(nil, ru.nameAs, series, idx))
	return name, name != ""
}

// resourcesFor maps a series' label names to resources, and computes prometheus-adapter's namespaced
// flag: true when any label is not mapped to namespaces, nodes or persistentvolumes, counting labels
// that map to nothing, but not labels the template matches with a resource the cluster does not have.
func (c *converter) resourcesFor(labels []string, cache map[string]*naming.Resource) ([]naming.Resource, bool) {
	var out []naming.Resource
	namespaced := false
	seen := make(map[string]bool, len(labels))
	for _, l := range labels {
		if seen[l] || l == "__name__" {
			continue
		}
		seen[l] = true
		res, found, unknown := c.resourceOf(l, cache)
		if unknown {
			continue
		}
		if found && !slices.ContainsFunc(out, func(r naming.Resource) bool { return r.GroupResource == res.GroupResource }) {
			out = append(out, res)
		}
		if !alwaysClusterScoped(res.GroupResource) {
			namespaced = true
		}
	}
	return out, namespaced
}

// metric is the Metric for one name on one resource, with its labels resolved once.
func (ru *rule) metric(name, series string, res naming.Resource, namespaced bool) Metric {
	m := Metric{Name: name, External: ru.external, Resource: res, Namespaced: namespaced, Series: series, RuleIndex: ru.index, rule: ru}
	if !ru.external {
		m.nameLabel, m.labelErr = ru.conv.labelFor(res)
	}
	if namespaced {
		m.nsLabel, m.nsErr = ru.conv.labelFor(ru.conv.nsRes)
	}
	return m
}
