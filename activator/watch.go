package activator

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/wake"
)

// Cluster is the activator's view of the cluster, kept by informers: the
// routing table from HPAs, and the Ready addresses of Services from their
// EndpointSlices. Nothing here lists from the API server per request.
//
// The table is rebuilt only when an HPA's routes can have changed (its
// opt-in, route annotations or identity; not its status), at most once per
// rebuildEvery: a burst of changes is coalesced into one rebuild.
type Cluster struct {
	factory  informers.SharedInformerFactory
	hpas     autoscalinglisters.HorizontalPodAutoscalerLister
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	synced   []cache.InformerSynced

	// Events, if set, records a HostClaimRefused Event on an HPA whose claim the table refuses.
	Events record.EventRecorder

	table        atomic.Pointer[Table]
	own          atomic.Pointer[Ownership] // nil: no ownership map
	dirty        chan struct{}             // a rebuild is due
	rebuildEvery time.Duration
	rebuilds     atomic.Int64 // table rebuilds so far

	rebuildMu sync.Mutex
	refused   map[string]string // "ns/hpa host+prefix" → reason, as of the last rebuild

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) on every Service or EndpointSlice change
}

// NewCluster builds the informers over every namespace; start them with Run.
func NewCluster(kube kubernetes.Interface, resync time.Duration) *Cluster {
	f := informers.NewSharedInformerFactory(kube, resync)
	hpa := f.Autoscaling().V2().HorizontalPodAutoscalers()
	svc := f.Core().V1().Services()
	eps := f.Discovery().V1().EndpointSlices()
	c := &Cluster{
		factory: f, hpas: hpa.Lister(), services: svc.Lister(), slices: eps.Lister(),
		synced:  []cache.InformerSynced{hpa.Informer().HasSynced, svc.Informer().HasSynced, eps.Informer().HasSynced},
		changed: make(chan struct{}),
		dirty:   make(chan struct{}, 1), rebuildEvery: 100 * time.Millisecond,
	}
	c.table.Store(&Table{})
	rebuild := cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if claims(o) {
				c.requestRebuild()
			}
		},
		UpdateFunc: func(old, cur any) {
			if routeKey(old) != routeKey(cur) {
				c.requestRebuild()
			}
		},
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if claims(o) {
				c.requestRebuild()
			}
		},
	}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.notify() },
		UpdateFunc: func(_, _ any) { c.notify() },
		DeleteFunc: func(any) { c.notify() },
	}
	// The handler's own HasSynced: the initial list has reached it, so Run's first rebuild has it all.
	reg, _ := hpa.Informer().AddEventHandler(rebuild)
	if reg != nil {
		c.synced = append(c.synced, reg.HasSynced)
	}
	_, _ = svc.Informer().AddEventHandler(notify)
	_, _ = eps.Informer().AddEventHandler(notify)
	return c
}

// Run starts the informers, waits for their caches and builds the first
// table; later rebuilds run until ctx ends.
func (c *Cluster) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return errors.New("activator: HPA, Service and EndpointSlice caches did not sync")
	}
	select {
	case <-c.dirty: // the initial list is in this rebuild
	default:
	}
	c.rebuild()
	go c.rebuildLoop(ctx)
	return nil
}

// SetOwnership puts a host ownership map in force (nil: none) and rebuilds the table.
func (c *Cluster) SetOwnership(o Ownership) {
	if o == nil {
		c.own.Store(nil)
	} else {
		c.own.Store(&o)
	}
	c.requestRebuild()
}

func (c *Cluster) requestRebuild() {
	select {
	case c.dirty <- struct{}{}:
	default: // one is due already
	}
}

// rebuildLoop rebuilds on request, at once after a quiet spell and then at most once per rebuildEvery.
func (c *Cluster) rebuildLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.dirty:
		}
		c.rebuild()
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.rebuildEvery):
		}
	}
}

// claims reports whether an HPA object declares routes (opted in, with hosts).
func claims(o any) bool {
	h, ok := o.(*autoscalingv2.HorizontalPodAutoscaler)
	return ok && h.Annotations[wake.AnnotationEnabled] == "true" && h.Annotations[AnnotationHosts] != ""
}

// routeKey is everything of an HPA the routing table reads: a status-only update leaves it unchanged.
func routeKey(o any) string {
	h, ok := o.(*autoscalingv2.HorizontalPodAutoscaler)
	if !ok {
		return ""
	}
	a := h.Annotations
	return strings.Join([]string{h.Namespace, h.Name, string(h.UID), h.CreationTimestamp.UTC().String(),
		a[wake.AnnotationEnabled], a[AnnotationHosts], a[AnnotationService]}, "\x00")
}

// HPA returns an HPA from the cache.
func (c *Cluster) HPA(namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	return c.hpas.HorizontalPodAutoscalers(namespace).Get(name)
}

// Table returns the current routing table.
func (c *Cluster) Table() *Table { return c.table.Load() }

func (c *Cluster) rebuild() {
	c.rebuildMu.Lock()
	defer c.rebuildMu.Unlock()
	c.rebuilds.Add(1)
	hpas, err := c.hpas.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "list HPAs from cache")
		return
	}
	var routes []Route
	for _, h := range hpas {
		rs, err := RoutesFromHPA(h)
		if err != nil {
			klog.ErrorS(err, "bad route annotation; its other routes still serve", "hpa", h.Namespace+"/"+h.Name)
		}
		routes = append(routes, rs...)
	}
	var own Ownership
	if p := c.own.Load(); p != nil {
		own = *p
	}
	t, refused := NewTable(routes, own)
	c.report(refused)
	c.table.Store(t)
	c.notify() // a new route may already have Ready addresses
}

// report logs, and records as an Event on the HPA, each refused claim whose decision is new.
func (c *Cluster) report(refused []Refusal) {
	cur := make(map[string]string, len(refused))
	for _, r := range refused {
		key := r.Route.Target.Namespace + "/" + r.Route.Target.HPA + " " + r.Route.Host + r.Route.PathPrefix
		cur[key] = r.Reason
		if c.refused[key] == r.Reason {
			continue
		}
		klog.ErrorS(r, "host claim refused", "hpa", r.Route.Target.Namespace+"/"+r.Route.Target.HPA, "host", r.Route.Host, "owner", r.Owner)
		if c.Events == nil {
			continue
		}
		h, err := c.hpas.HorizontalPodAutoscalers(r.Route.Target.Namespace).Get(r.Route.Target.HPA)
		if err != nil {
			continue
		}
		c.Events.Eventf(h, corev1.EventTypeWarning, ReasonHostClaimRefused, "route %s refused: %s", r.Route.Host+r.Route.PathPrefix, r.Reason)
	}
	c.refused = cur
}

// ReasonHostClaimRefused is the reason of the Event on an HPA whose route claim is refused.
const ReasonHostClaimRefused = "HostClaimRefused"

func (c *Cluster) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Changed returns a channel closed at the next Service, EndpointSlice or route change.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// ServiceError says why a target's Service cannot be reached (a 502).
type ServiceError struct{ Reason string }

func (e *ServiceError) Error() string { return e.Reason }

// Ready returns the sorted host:port addresses of t's Ready endpoints; an empty
// list means none is Ready (asleep or waking), a *ServiceError means the route is broken.
func (c *Cluster) Ready(t Target) ([]string, error) {
	svc, err := c.services.Services(t.Namespace).Get(t.Service)
	if apierrors.IsNotFound(err) {
		return nil, &ServiceError{Reason: fmt.Sprintf("service %s/%s (routed by HPA %s) does not exist", t.Namespace, t.Service, t.HPA)}
	}
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", t, err)
	}
	sp, err := servicePort(svc, t.Port)
	if err != nil {
		return nil, err
	}
	slices, err := c.slices.EndpointSlices(t.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: t.Service}))
	if err != nil {
		return nil, fmt.Errorf("endpointslices of %s: %w", t, err)
	}
	return readyAddresses(slices, sp, t.Namespace), nil
}

// servicePort finds the port a Target names (by name or number, or the only one).
func servicePort(svc *corev1.Service, port string) (corev1.ServicePort, error) {
	ports := svc.Spec.Ports
	if port == "" {
		if len(ports) == 1 {
			return ports[0], nil
		}
		return corev1.ServicePort{}, &ServiceError{Reason: fmt.Sprintf("service %s/%s has %d ports; name one in %s (\"%s:<port>\")", svc.Namespace, svc.Name, len(ports), AnnotationService, svc.Name)}
	}
	n, numErr := strconv.Atoi(port)
	var have []string
	for _, p := range ports {
		if p.Name == port || (numErr == nil && int(p.Port) == n) {
			return p, nil
		}
		have = append(have, fmt.Sprintf("%s/%d", p.Name, p.Port))
	}
	return corev1.ServicePort{}, &ServiceError{Reason: fmt.Sprintf("service %s/%s has no port %q (ports: %v)", svc.Namespace, svc.Name, port, have)}
}

// ManagedByController is the EndpointSlice controller's value of discoveryv1.LabelManagedBy.
const ManagedByController = "endpointslice-controller.k8s.io"

// readyAddresses lists host:port of the Ready endpoints of sp across the
// slices of namespace ns, deduplicated and sorted. Only what kube-proxy would
// route to, from the target's own namespace, is used:
//   - IPv4 and IPv6 slices only (an FQDN slice would make us resolve and dial any name);
//   - addresses that parse as IPs of the slice's family, never loopback,
//     link-local (cloud metadata), unspecified or multicast;
//   - a slice kept by the EndpointSlice controller, or an endpoint whose
//     targetRef is a Pod of ns.
//
// Ready nil counts as ready: the EndpointSlice API says "nil should be
// interpreted as ready" and kube-proxy does so; a Terminating endpoint is
// never used.
func readyAddresses(slices []*discoveryv1.EndpointSlice, sp corev1.ServicePort, ns string) []string {
	set := map[string]struct{}{}
	for _, s := range slices {
		if s.Namespace != ns || (s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6) {
			continue
		}
		managed := s.Labels[discoveryv1.LabelManagedBy] == ManagedByController
		var port int32 = -1
		for _, p := range s.Ports {
			if p.Port != nil && ptrString(p.Name) == sp.Name {
				port = *p.Port
			}
		}
		if port < 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
				continue
			}
			if !managed && (e.TargetRef == nil || e.TargetRef.Kind != "Pod" || e.TargetRef.Namespace != ns) {
				continue
			}
			for _, a := range e.Addresses {
				if ip, ok := usableIP(a, s.AddressType); ok {
					set[netip.AddrPortFrom(ip, uint16(port)).String()] = struct{}{}
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// usableIP parses an endpoint address of a slice of type at and refuses what no pod has.
func usableIP(a string, at discoveryv1.AddressType) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(a)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if (at == discoveryv1.AddressTypeIPv4) != ip.Is4() {
		return netip.Addr{}, false
	}
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() {
		return netip.Addr{}, false
	}
	return ip, true
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
