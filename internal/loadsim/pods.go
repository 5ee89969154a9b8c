package loadsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// PodSource tells which pods are Ready; implementations must be safe for concurrent use.
type PodSource interface {
	ReadyPods(namespace string, selector labels.Selector) []string // ReadyPods returns the names of the Ready pods in namespace matching selector.
}

// InformerPods is a PodSource backed by shared informers on core/v1 Pods, one per watched namespace.
type InformerPods struct {
	listers   map[string]corelisters.PodNamespaceLister
	factories []informers.SharedInformerFactory
	watched   []string // Namespace of each factory.
	cancel    context.CancelFunc
	stopOnce  sync.Once
}

// NewInformerPods starts Pod informers for namespaces and waits, bounded by ctx, for their caches to sync; they run until ctx is done or Stop is called.
func NewInformerPods(ctx context.Context, client kubernetes.Interface, namespaces []string) (*InformerPods, error) {
	if client == nil {
		return nil, errors.New("loadsim: pod informers: nil client")
	}
	if len(namespaces) == 0 {
		return nil, errors.New("loadsim: pod informers: no namespaces")
	}
	ictx, cancel := context.WithCancel(ctx)
	p := &InformerPods{listers: map[string]corelisters.PodNamespaceLister{}, cancel: cancel}
	for _, ns := range namespaces {
		if ns == "" {
			cancel()
			return nil, errors.New("loadsim: pod informers: empty namespace")
		}
		if p.listers[ns] != nil {
			continue
		}
		f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
		pods := f.Core().V1().Pods()
		pods.Informer() // Register the informer before Start.
		p.listers[ns] = pods.Lister().Pods(ns)
		p.factories = append(p.factories, f)
		p.watched = append(p.watched, ns)
	}
	for _, f := range p.factories {
		f.StartWithContext(ictx)
	}
	for i, f := range p.factories {
		if err := f.WaitForCacheSyncWithContext(ctx).AsError(); err != nil {
			p.Stop()
			return nil, fmt.Errorf("loadsim: pod informers: sync pods of namespace %s: %w", p.watched[i], err)
		}
	}
	return p, nil
}

// Stop stops the informers and waits for them to finish; ReadyPods keeps answering from the last cache contents.
func (p *InformerPods) Stop() {
	p.stopOnce.Do(func() {
		p.cancel()
		for _, f := range p.factories {
			f.Shutdown()
		}
	})
}

// ReadyPods returns the sorted names of pods in namespace matching selector that have condition Ready=True and no deletion timestamp; it returns nil for a namespace not watched.
func (p *InformerPods) ReadyPods(namespace string, selector labels.Selector) []string {
	l := p.listers[namespace]
	if l == nil {
		return nil
	}
	pods, err := l.List(selector)
	if err != nil { // A cache lister does not fail; be defensive anyway.
		return nil
	}
	var names []string
	for _, pod := range pods {
		if IsPodReady(pod) {
			names = append(names, pod.Name)
		}
	}
	slices.Sort(names)
	return names
}

// IsPodReady reports whether pod has condition Ready=True and is not being deleted.
func IsPodReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Details implements PodDetails: the pod's container names and node, from the cache.
func (p *InformerPods) Details(namespace, pod string) ([]string, string) {
	l := p.listers[namespace]
	if l == nil {
		return nil, ""
	}
	o, err := l.Get(pod)
	if err != nil {
		return nil, ""
	}
	cs := make([]string, len(o.Spec.Containers))
	for i, c := range o.Spec.Containers {
		cs[i] = c.Name
	}
	return cs, o.Spec.NodeName
}
