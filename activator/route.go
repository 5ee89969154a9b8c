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
	"time"

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
	// Created and UID identify the claim (the HPA's creationTimestamp and
	// UID): of two claims on one host, the older one wins.
	Created time.Time
	UID     string
}

// older orders claims: the older HPA first, then by UID, then by name, so
// every replica, after every restart, takes the same decision.
func older(a, b Route) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	if a.UID != b.UID {
		return a.UID < b.UID
	}
	if ka, kb := a.Target.Namespace+"/"+a.Target.HPA, b.Target.Namespace+"/"+b.Target.HPA; ka != kb {
		return ka < kb
	}
	return a.Host+a.PathPrefix < b.Host+b.PathPrefix
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
		r := Route{Host: host, Target: t, Created: h.CreationTimestamp.Time, UID: string(h.UID)}
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

// Refusal is a claim NewTable refused: the route, and why.
type Refusal struct {
	Route Route
	// Owner is the namespace that holds the host ("" when the ownership map refuses the claim).
	Owner  string
	Reason string
}

// Error renders the refusal with the HPA that made the claim.
func (r Refusal) Error() string {
	return fmt.Sprintf("route %s of HPA %s/%s refused: %s", r.Route.Host+r.Route.PathPrefix, r.Route.Target.Namespace, r.Route.Target.HPA, r.Reason)
}

// NewTable indexes routes and binds each host to one namespace. A claim is
// refused when own (if not nil) does not allow the host to the claim's
// namespace, or when the host is already routed to another namespace,
// whatever the path prefix: the oldest claim (Route.Created, then UID)
// holds a host. A (host, prefix) claimed twice in one namespace also goes to
// the oldest. The decision does not depend on the order of routes.
func NewTable(routes []Route, own Ownership) (*Table, []Refusal) {
	routes = append([]Route(nil), routes...)
	sort.SliceStable(routes, func(i, j int) bool { return older(routes[i], routes[j]) })
	t := &Table{byHost: map[string][]Route{}}
	var refused []Refusal
	owner := map[string]string{} // host → namespace
	seen := map[string]Target{}  // host+prefix → target
	for _, r := range routes {
		ns, k := r.Target.Namespace, r.Host+r.PathPrefix
		if !own.Allows(ns, r.Host) {
			refused = append(refused, Refusal{Route: r, Reason: fmt.Sprintf("the host ownership map does not allow host %s to namespace %s", r.Host, ns)})
			continue
		}
		if o, ok := owner[r.Host]; ok && o != ns {
			refused = append(refused, Refusal{Route: r, Owner: o, Reason: fmt.Sprintf("host %s is routed to namespace %s by an older claim", r.Host, o)})
			continue
		}
		if prev, dup := seen[k]; dup {
			if prev != r.Target {
				refused = append(refused, Refusal{Route: r, Owner: ns, Reason: fmt.Sprintf("%s is routed to HPA %s/%s by an older claim", k, prev.Namespace, prev.HPA)})
			}
			continue
		}
		owner[r.Host] = ns
		seen[k] = r.Target
		t.byHost[r.Host] = append(t.byHost[r.Host], r)
	}
	for _, rs := range t.byHost {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].PathPrefix) > len(rs[j].PathPrefix) })
	}
	return t, refused
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

// Hosts lists the routed hosts, with their prefixes, sorted (for diagnostics; never sent to clients).
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
