package activator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
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
	"k8s.io/klog/v2"
)

// Cluster is the activator's view of the cluster, kept by informers: the
// routing table from HPAs, and the Ready addresses of Services from their
// EndpointSlices. Nothing here lists from the API server per request.
type Cluster struct {
	factory  informers.SharedInformerFactory
	hpas     autoscalinglisters.HorizontalPodAutoscalerLister
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	synced   []cache.InformerSynced

	table atomic.Pointer[Table]

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
	}
	c.table.Store(&Table{})
	rebuild := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.rebuild() },
		UpdateFunc: func(_, _ any) { c.rebuild() },
		DeleteFunc: func(any) { c.rebuild() },
	}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.notify() },
		UpdateFunc: func(_, _ any) { c.notify() },
		DeleteFunc: func(any) { c.notify() },
	}
	_, _ = hpa.Informer().AddEventHandler(rebuild)
	_, _ = svc.Informer().AddEventHandler(notify)
	_, _ = eps.Informer().AddEventHandler(notify)
	return c
}

// Run starts the informers and waits for their caches.
func (c *Cluster) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return errors.New("activator: HPA, Service and EndpointSlice caches did not sync")
	}
	c.rebuild()
	return nil
}

// HPA returns an HPA from the cache.
func (c *Cluster) HPA(namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	return c.hpas.HorizontalPodAutoscalers(namespace).Get(name)
}

// Table returns the current routing table.
func (c *Cluster) Table() *Table { return c.table.Load() }

func (c *Cluster) rebuild() {
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
	t, errs := NewTable(routes)
	for _, err := range errs {
		klog.ErrorS(err, "conflicting routes")
	}
	c.table.Store(t)
	c.notify() // a new route may already have Ready addresses
}

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
	return readyAddresses(slices, sp), nil
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

// readyAddresses lists host:port of the Ready endpoints of sp across slices, deduplicated and sorted.
func readyAddresses(slices []*discoveryv1.EndpointSlice, sp corev1.ServicePort) []string {
	set := map[string]struct{}{}
	for _, s := range slices {
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
			for _, a := range e.Addresses {
				set[net.JoinHostPort(a, strconv.Itoa(int(port)))] = struct{}{}
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

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
