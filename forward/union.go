package forward

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// Custom returns p with discovery listing p's custom metrics plus those the upstreams list and p
// does not serve. The upstreams' lists come from the last refresh: discovery never waits on them.
func (f *Forwarder) Custom(p cmprovider.CustomMetricsProvider) cmprovider.CustomMetricsProvider {
	if !f.Has(Custom) {
		return p
	}
	return customUnion{CustomMetricsProvider: p, f: f}
}

// External is Custom for external metrics.
func (f *Forwarder) External(p cmprovider.ExternalMetricsProvider) cmprovider.ExternalMetricsProvider {
	if !f.Has(External) {
		return p
	}
	return externalUnion{ExternalMetricsProvider: p, f: f}
}

type customUnion struct {
	cmprovider.CustomMetricsProvider
	f *Forwarder
}

func (c customUnion) ListAllMetrics() []cmprovider.CustomMetricInfo {
	ours := c.CustomMetricsProvider.ListAllMetrics()
	out := append([]cmprovider.CustomMetricInfo(nil), ours...)
	seen := map[string]bool{}
	for _, i := range ours {
		seen[customKey(i.GroupResource, i.Metric)] = true
	}
	for _, u := range c.f.upstreams[Custom] {
		for _, i := range u.list.Load().custom {
			k := customKey(i.GroupResource, i.Metric)
			if seen[k] || matchCustom(ours, nil, i.GroupResource.String(), i.Metric) {
				continue
			}
			seen[k] = true
			out = append(out, i)
		}
	}
	return out
}

type externalUnion struct {
	cmprovider.ExternalMetricsProvider
	f *Forwarder
}

func (e externalUnion) ListAllExternalMetrics() []cmprovider.ExternalMetricInfo {
	ours := e.ExternalMetricsProvider.ListAllExternalMetrics()
	out := append([]cmprovider.ExternalMetricInfo(nil), ours...)
	seen := map[string]bool{}
	for _, i := range ours {
		seen[i.Metric] = true
	}
	for _, u := range e.f.upstreams[External] {
		for _, m := range u.list.Load().external {
			if !seen[m] {
				seen[m] = true
				out = append(out, cmprovider.ExternalMetricInfo{Metric: m})
			}
		}
	}
	return out
}

// ServeHTTP reports the upstreams and clashes at /readyz/forward. It always answers 200: an
// upstream that is down affects only its own metrics.
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	apis := make([]string, 0, len(f.upstreams))
	for api := range f.upstreams {
		apis = append(apis, api)
	}
	sort.Strings(apis)
	now := f.now()
	for _, api := range apis {
		for _, u := range f.upstreams[api] {
			l := u.list.Load()
			fmt.Fprintf(&b, "upstream %s (%s, %s): ", u.Name(), api, u.spec.URL)
			if l.listed {
				fmt.Fprintf(&b, "%d metrics, listed %s ago", len(l.keys), now.Sub(l.at).Round(1e6))
			} else {
				b.WriteString("metric list not read yet")
			}
			if l.err != nil {
				fmt.Fprintf(&b, "; last attempt failed %s ago: %v", now.Sub(l.failedAt).Round(1e6), l.err)
			}
			b.WriteString("\n")
		}
	}
	if f.ours.DiscoveryPending() {
		b.WriteString("promql-adapter's discovery pending: metrics that only upstreams list get a 503 until its pass completes\n")
	}
	f.rmu.Lock()
	fmt.Fprintf(&b, "%d metrics listed by promql-adapter within %s stay routed to it\n", len(f.recentExt)+len(f.recentCustom), RecentlyServed)
	f.rmu.Unlock()
	clashes := f.Clashes()
	fmt.Fprintf(&b, "%d clashes\n", len(clashes))
	for _, c := range clashes {
		fmt.Fprintf(&b, "clash: %s metric %q is listed by upstream %s and answered by %s\n", kind(c.API), c.Metric, c.Upstream, c.Winner)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(b.String()))
}
