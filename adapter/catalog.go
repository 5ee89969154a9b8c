package adapter

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/naming"
)

// catalog is an immutable set of served metrics; the provider swaps it whole.
type catalog struct {
	custom   map[schema.GroupResource]map[string]*naming.Metric
	external map[string]*naming.Metric
	list     []provider.CustomMetricInfo
	extList  []provider.ExternalMetricInfo
	seq      uint64 // order of the rules and discovery snapshot it was built from
	pending  bool   // a discovery selector of its rules was never listed (Provider.DiscoveryPending)
}

func newCatalog(metrics []*naming.Metric) *catalog {
	c := &catalog{
		custom:   map[schema.GroupResource]map[string]*naming.Metric{},
		external: map[string]*naming.Metric{},
	}
	for _, m := range metrics {
		if m.External {
			if _, dup := c.external[m.Name]; !dup {
				c.external[m.Name] = m
				c.extList = append(c.extList, provider.ExternalMetricInfo{Metric: m.Name})
			}
			continue
		}
		gr := m.Resource.GroupResource
		if c.custom[gr] == nil {
			c.custom[gr] = map[string]*naming.Metric{}
		}
		if _, dup := c.custom[gr][m.Name]; dup {
			continue // a fixed rule wins over a discovered metric of the same name
		}
		c.custom[gr][m.Name] = m
		c.list = append(c.list, provider.CustomMetricInfo{GroupResource: gr, Namespaced: m.Resource.Namespaced, Metric: m.Name})
	}
	sort.Slice(c.list, func(i, j int) bool {
		if c.list[i].GroupResource != c.list[j].GroupResource {
			return c.list[i].GroupResource.String() < c.list[j].GroupResource.String()
		}
		return c.list[i].Metric < c.list[j].Metric
	})
	sort.Slice(c.extList, func(i, j int) bool { return c.extList[i].Metric < c.extList[j].Metric })
	return c
}

// lookup finds a custom metric; a resource without a group ("deployments") matches a unique grouped one.
func (c *catalog) lookup(gr schema.GroupResource, name string) *naming.Metric {
	if m := c.custom[gr][name]; m != nil {
		return m
	}
	if gr.Group != "" {
		return nil
	}
	var found *naming.Metric
	for g, ms := range c.custom {
		if g.Resource == gr.Resource && ms[name] != nil {
			if found != nil {
				return nil
			}
			found = ms[name]
		}
	}
	return found
}

// nearest lists up to five served names closest to name, for "not found" messages.
func nearest(name string, served []string) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	for _, s := range served {
		d := distance(strings.ToLower(name), strings.ToLower(s))
		if strings.Contains(s, name) || strings.Contains(name, s) {
			d = 0
		}
		cs = append(cs, cand{s, d})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	var out []string
	for _, c := range cs {
		if len(out) == 5 {
			break
		}
		if len(out) > 0 && out[len(out)-1] == c.name {
			continue
		}
		out = append(out, c.name)
	}
	return out
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
