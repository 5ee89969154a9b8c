package adapter

import (
	"sync"
	"time"

	"github.com/promql-adapter/promql-adapter/naming"
)

// NameObjects decides whether a request names its selected objects (name=~"a|b|...", a set lookup
// in Prometheus) or asks for the whole namespace and keeps the selected objects' samples. The cost
// is in series, not objects: a namespace-wide query returns every series of the metric in the
// namespace, stale pods and other workloads included. So:
//   - past maxRegex bytes the objects are never named (some backends refuse longer matchers);
//   - up to budget bytes they are always named;
//   - in between they are named when the last namespace-wide answer (lastWide series, known) held
//     a quarter more series than there are selected objects, and without such a measurement when
//     they are a minority of the namespace's objects (a namespace-wide query then measures).
func NameObjects(regexBytes, selected, total, budget, maxRegex, lastWide int, known bool) bool {
	switch {
	case regexBytes > maxRegex:
		return false
	case regexBytes <= budget:
		return true
	case known:
		return lastWide > selected+selected/4
	}
	return selected*2 < total
}

// wideStats remembers how many series the last namespace-wide answer of a metric held, per
// namespace and metric selector. It is bounded: when full it starts again; entries expire.
type wideStats struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	m   map[string]wideEntry
}

type wideEntry struct {
	series int
	at     time.Time
}

func newWideStats(max int) *wideStats {
	return &wideStats{max: max, ttl: 10 * time.Minute, m: map[string]wideEntry{}}
}

func (w *wideStats) get(key string, now time.Time) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.m[key]
	if !ok || now.Sub(e.at) > w.ttl {
		return 0, false
	}
	return e.series, true
}

func (w *wideStats) put(key string, series int, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.m[key]; !ok && len(w.m) >= w.max {
		clear(w.m)
	}
	w.m[key] = wideEntry{series: series, at: now}
}

// wideKey identifies a metric's namespace-wide query: metric, resource, namespace and metric selector.
func wideKey(m *naming.Metric, namespace string, sel naming.Selection) string {
	key := m.Resource.GroupResource.String() + "\x00" + m.Name + "\x00" + namespace
	if sel.Selector != nil && !sel.Selector.Empty() {
		key += "\x00" + sel.Selector.String()
	}
	return key
}

// filterSamples returns the samples of the allowed objects in a new slice (samples may be shared).
func filterSamples(samples []Sample, allowed []string) []Sample {
	out := make([]Sample, 0, min(len(samples), len(allowed)))
	if len(allowed) <= 8 {
		for _, s := range samples {
			for _, a := range allowed {
				if s.Object == a {
					out = append(out, s)
					break
				}
			}
		}
		return out
	}
	allow := make(map[string]struct{}, len(allowed))
	for _, n := range allowed {
		allow[n] = struct{}{}
	}
	for _, s := range samples {
		if _, ok := allow[s.Object]; ok {
			out = append(out, s)
		}
	}
	return out
}
