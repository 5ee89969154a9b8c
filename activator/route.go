// Package activator is an HTTP reverse proxy in front of scale-to-zero
// targets. It routes by Host (and an optional path prefix) to the Service of
// an opted-in HPA's target, forwards straight to the Service's Ready
// addresses while the target is awake, and holds requests while it sleeps:
// the first held request wakes the target at once, and every held request is
// forwarded, in arrival order, as soon as an address is Ready.
//
// Three parts, each testable alone: the routing table (Table, fed by
// informers in Watch), hold/wake (Holds, one bounded queue per target) and
// forward (Forwarder, httputil.ReverseProxy over the Ready addresses).
package activator

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/promql-adapter/promql-adapter/wake"
)

// Route annotations, read from an HPA next to the scale-to-zero ones; a route
// needs the HPA opted in (wake.AnnotationEnabled) and AnnotationHosts.
const (
	// AnnotationHosts lists ","-separated hosts the activator routes to the target, each optionally with a path prefix: "web.example.com,example.com/web".
	AnnotationHosts = wake.AnnotationPrefix + "hosts"
	// AnnotationService names the Service (and port name or number) in front of the target: "web" or "web:http"; the port may be left out when the Service has one.
	AnnotationService = wake.AnnotationPrefix + "service"
)

// Target is one opted-in HPA's workload as the activator reaches it.
type Target struct {
	Namespace string
	HPA       string // the HPA's name
	Service   string // the Service in front of the workload
	Port      string // the Service port, by name or number; "" means its only port
}

// String renders t as namespace/service.
func (t Target) String() string { return t.Namespace + "/" + t.Service }

// Route sends requests for Host whose path starts with PathPrefix to Target.
type Route struct {
	Host       string
	PathPrefix string // "" or starting with "/"
	Target     Target
}

// RoutesFromHPA reads the routes an HPA declares; none (and nil error) unless it opted in and set AnnotationHosts.
func RoutesFromHPA(h *autoscalingv2.HorizontalPodAutoscaler) ([]Route, error) {
	a := h.Annotations
	if a[wake.AnnotationEnabled] != "true" || strings.TrimSpace(a[AnnotationHosts]) == "" {
		return nil, nil
	}
	svc, port, _ := strings.Cut(strings.TrimSpace(a[AnnotationService]), ":")
	if svc == "" {
		return nil, fmt.Errorf("HPA %s/%s: %s is set but %s is missing", h.Namespace, h.Name, AnnotationHosts, AnnotationService)
	}
	if msgs := validation.IsDNS1035Label(svc); len(msgs) > 0 {
		return nil, fmt.Errorf("HPA %s/%s: %s: service %q: %s", h.Namespace, h.Name, AnnotationService, svc, strings.Join(msgs, "; "))
	}
	t := Target{Namespace: h.Namespace, HPA: h.Name, Service: svc, Port: port}
	var routes []Route
	var errs []error
	for _, item := range strings.Split(a[AnnotationHosts], ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		host, prefix, hasPrefix := strings.Cut(item, "/")
		host = strings.ToLower(host)
		if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 && net.ParseIP(host) == nil {
			errs = append(errs, fmt.Errorf("HPA %s/%s: %s: host %q: %s", h.Namespace, h.Name, AnnotationHosts, host, strings.Join(msgs, "; ")))
			continue
		}
		r := Route{Host: host, Target: t}
		if hasPrefix {
			r.PathPrefix = "/" + strings.TrimSuffix(prefix, "/")
			if r.PathPrefix == "/" {
				r.PathPrefix = ""
			}
		}
		routes = append(routes, r)
	}
	return routes, errors.Join(errs...)
}

// Table is an immutable routing table; build a new one on every change.
type Table struct {
	byHost map[string][]Route // longest prefix first
}

// NewTable indexes routes; a (host, prefix) claimed twice goes to the first HPA by namespace/name and the other is reported.
func NewTable(routes []Route) (*Table, []error) {
	sort.SliceStable(routes, func(i, j int) bool {
		a, b := routes[i].Target, routes[j].Target
		return a.Namespace+"/"+a.HPA < b.Namespace+"/"+b.HPA
	})
	t := &Table{byHost: map[string][]Route{}}
	var errs []error
	seen := map[string]Target{}
	for _, r := range routes {
		k := r.Host + r.PathPrefix
		if prev, dup := seen[k]; dup {
			if prev != r.Target {
				errs = append(errs, fmt.Errorf("route %s: claimed by HPA %s/%s and HPA %s/%s; the first wins", k, prev.Namespace, prev.HPA, r.Target.Namespace, r.Target.HPA))
			}
			continue
		}
		seen[k] = r.Target
		t.byHost[r.Host] = append(t.byHost[r.Host], r)
	}
	for _, rs := range t.byHost {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].PathPrefix) > len(rs[j].PathPrefix) })
	}
	return t, errs
}

// Lookup finds the route of a request's Host (port ignored) and path.
func (t *Table) Lookup(host, path string) (Route, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, r := range t.byHost[host] {
		if r.PathPrefix == "" || path == r.PathPrefix || strings.HasPrefix(path, r.PathPrefix+"/") {
			return r, true
		}
	}
	return Route{}, false
}

// Hosts lists the routed hosts, with their prefixes, sorted: what a 404 says exists.
func (t *Table) Hosts() []string {
	var out []string
	for _, rs := range t.byHost {
		for _, r := range rs {
			out = append(out, r.Host+r.PathPrefix)
		}
	}
	sort.Strings(out)
	return out
}
