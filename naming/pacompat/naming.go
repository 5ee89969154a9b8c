package pacompat

import (
	"fmt"

	"github.com/promql-adapter/promql-adapter/naming"
)

// Load parses and compiles a prometheus-adapter config into the rule set the adapter serves,
// with the warnings about what it reads but does not serve (resourceRules, unmapped labels).
func Load(data []byte, resolver naming.Resolver) (*naming.Rules, []string, error) {
	cfg, err := Parse(data)
	if err != nil {
		return nil, nil, err
	}
	rules, err := Compile(cfg, resolver)
	if err != nil {
		return nil, nil, err
	}
	out := &naming.Rules{Series: seriesRules{rules}}
	if cfg.ResourceRules != nil {
		if out.Resource, err = CompileResourceRules(cfg.ResourceRules, resolver); err != nil {
			return nil, nil, err
		}
	}
	return out, rules.Warnings, nil
}

// seriesRules serves prometheus-adapter rules through naming.SeriesRules.
type seriesRules struct{ r *Rules }

func (s seriesRules) SeriesQueries() []string { return s.r.SeriesQueries() }

func (s seriesRules) ExpandSeries(in []naming.SeriesLabels) []*naming.Metric {
	series := make([]Series, len(in))
	for i, x := range in {
		series[i] = Series{Query: x.Query, Name: x.Name, Labels: x.Labels}
	}
	found := s.r.Expand(series)
	out := make([]*naming.Metric, 0, len(found))
	for i := range found {
		pm := &found[i]
		res := pm.Resource
		res.Namespaced = pm.Namespaced // served as prometheus-adapter serves it
		out = append(out, naming.NewRendered(naming.Metric{
			Name: pm.Name, External: pm.External, Resource: res,
			NSLabel: pm.NamespaceLabel(), NameLabel: pm.NameLabel(), RuleIndex: pm.RuleIndex,
			NeedsNames: pm.rule.usesValues, KeepNameLabel: pm.External,
		}, pm.Build))
	}
	return out
}

var _ naming.SeriesRules = seriesRules{}

// String names the rule set in logs.
func (s seriesRules) String() string {
	return fmt.Sprintf("prometheus-adapter rules (%d series queries)", len(s.r.SeriesQueries()))
}
