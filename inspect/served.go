package inspect

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// Rule kinds, as reported in Explanation.Rule and RuleReport.Kind.
const (
	KindMetric            = "metric"             // a fixed-name rule of a native rule file
	KindDiscover          = "discover"           // a native rule with discover: one metric per series name
	KindPrometheusAdapter = "prometheus-adapter" // a rule of a prometheus-adapter config
)

// sectionMetrics is the top-level key of a native rule file.
const sectionMetrics = "metrics"

// origin is the rule a served metric comes from.
type origin struct {
	section  string // "metrics", or prometheus-adapter's "rules" / "externalRules"
	index    int    // position in the section
	kind     string // KindMetric, KindDiscover or KindPrometheusAdapter
	selector string // the series selector discovery listed with (discover.series or seriesQuery)
	series   string // the series name a discover rule's metric was expanded from
}

// ref is the rule's place in its file, e.g. "metrics[2]" or "externalRules[0]".
func (o origin) ref() string { return fmt.Sprintf("%s[%d]", o.section, o.index) }

// entry is one metric the rules yield, and whether the provider serves it.
type entry struct {
	metric     *naming.Metric
	origin     origin
	shadowedBy *origin // the rule whose metric of the same name and resource is served instead
}

// served is the provider's catalog rebuilt from the rules and the series its discovery listed,
// with the same expansion functions and the same first-wins precedence as adapter's catalog.
type served struct {
	entries []*entry
	byKey   map[string]*entry   // describes + "/" + name → the entry served
	names   map[string][]string // template selector → series names listed, sorted
	queryOf map[ruleKey]string  // prometheus-adapter rule → its seriesQuery
	silent  map[string]int      // prometheus-adapter seriesQuery that yields no metric → series it listed
}

// ruleKey identifies a rule in its file.
type ruleKey struct {
	section string
	index   int
}

// describes names what a metric describes: its group-resource, or "external".
func describes(m *naming.Metric) string {
	if m.External {
		return naming.External
	}
	return m.Resource.GroupResource.String()
}

func key(m *naming.Metric) string { return describes(m) + "/" + m.Name }

// servedMetrics rebuilds what p serves for rules (the rules p was built with).
func servedMetrics(p *adapter.Provider, rules *naming.Rules) (*served, error) {
	names, listed, err := listDiscovered(p, rules)
	if err != nil {
		return nil, err
	}
	s := &served{byKey: map[string]*entry{}, names: names, queryOf: map[ruleKey]string{}, silent: map[string]int{}}
	for _, m := range rules.Metrics {
		s.add(m, origin{section: sectionMetrics, index: m.RuleIndex, kind: KindMetric})
	}
	for _, t := range rules.Templates {
		for _, n := range names[adapter.DiscoveryKey(t)] {
			if m, ok := t.Expand(n); ok {
				s.add(m, origin{section: sectionMetrics, index: t.RuleIndex, kind: KindDiscover, selector: t.Series, series: n})
			}
		}
	}
	if rules.Series != nil {
		// Each rule sees only its own seriesQuery's series, so expanding one query's series at a
		// time tells which query every rule lists with, and which queries yield nothing.
		for _, q := range rules.Series.SeriesQueries() {
			var mine []naming.SeriesLabels
			for _, sl := range listed {
				if sl.Query == q {
					mine = append(mine, sl)
				}
			}
			yielded := rules.Series.ExpandSeries(mine)
			if len(yielded) == 0 {
				s.silent[q] = len(mine)
			}
			for _, m := range yielded {
				s.queryOf[ruleKey{paSection(m), m.RuleIndex}] = q
			}
		}
		for _, m := range rules.Series.ExpandSeries(listed) {
			sec := paSection(m)
			s.add(m, origin{section: sec, index: m.RuleIndex, kind: KindPrometheusAdapter,
				selector: s.queryOf[ruleKey{sec, m.RuleIndex}]})
		}
	}
	return s, nil
}

func paSection(m *naming.Metric) string {
	if m.External {
		return pacompat.SectionExternalRules
	}
	return pacompat.SectionRules
}

// add appends m; as in adapter's catalog, the first metric of a name and resource wins.
func (s *served) add(m *naming.Metric, o origin) {
	e := &entry{metric: m, origin: o}
	if first, dup := s.byKey[key(m)]; dup {
		e.shadowedBy = &first.origin
	} else {
		s.byKey[key(m)] = e
	}
	s.entries = append(s.entries, e)
}

// lookup finds the served custom metric as adapter's catalog does: a resource without a group
// ("deployments") matches a unique grouped one ("deployments.apps").
func (s *served) lookup(gr schema.GroupResource, name string) *entry {
	if e := s.byKey[gr.String()+"/"+name]; e != nil && !e.metric.External {
		return e
	}
	if gr.Group != "" {
		return nil
	}
	var found *entry
	for _, e := range s.byKey {
		if !e.metric.External && e.metric.Name == name && e.metric.Resource.GroupResource.Resource == gr.Resource {
			if found != nil {
				return nil
			}
			found = e
		}
	}
	return found
}

// discovered reports whether discovery yielded any metric.
func (s *served) discovered() bool {
	for _, e := range s.entries {
		if e.origin.kind != KindMetric {
			return true
		}
	}
	return false
}

// lookupExternal finds the served external metric of that name.
func (s *served) lookupExternal(name string) *entry {
	return s.byKey[naming.External+"/"+name]
}

// listDiscovered reads what p's discovery listed: series names per discovery selector, and the
// series listed for prometheus-adapter rules.
func listDiscovered(p *adapter.Provider, rules *naming.Rules) (map[string][]string, []naming.SeriesLabels, error) {
	names, series := p.Discovered()
	if rules.Series == nil {
		series = nil
	}
	return names, series, nil
}
