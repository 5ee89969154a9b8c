package adapter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/promql-adapter/promql-adapter/naming"
)

// Objects lists the objects a request selects.
type Objects interface {
	// Names returns the names of the objects of res in namespace that match sel,
	// and how many objects of res the namespace holds in all.
	Names(ctx context.Context, res naming.Resource, namespace string, sel labels.Selector) (names []string, total int, err error)
}

// InformerObjects answers Objects from metadata-only shared informers, so no request lists from the API server.
type InformerObjects struct {
	factory metadatainformer.SharedInformerFactory
	stop    <-chan struct{}
	mu      sync.Mutex
	started map[schema.GroupVersionResource]cache.GenericLister
}

// NewInformerObjects watches object metadata through client; informers start on first use and stop with ctx.
func NewInformerObjects(ctx context.Context, client metadata.Interface, resync time.Duration) *InformerObjects {
	return &InformerObjects{
		factory: metadatainformer.NewSharedInformerFactory(client, resync),
		stop:    ctx.Done(),
		started: map[schema.GroupVersionResource]cache.GenericLister{},
	}
}

// Warm starts the informers for the resources that rules describe, so the first request finds a filled cache.
func (o *InformerObjects) Warm(resources []naming.Resource) {
	for _, r := range resources {
		o.lister(gvr(r))
	}
}

func gvr(r naming.Resource) schema.GroupVersionResource {
	return r.GroupResource.WithVersion(r.Version)
}

func (o *InformerObjects) lister(g schema.GroupVersionResource) (cache.GenericLister, cache.InformerSynced) {
	o.mu.Lock()
	defer o.mu.Unlock()
	inf := o.factory.ForResource(g)
	if l, ok := o.started[g]; ok {
		return l, inf.Informer().HasSynced
	}
	l := inf.Lister()
	o.started[g] = l
	o.factory.Start(o.stop)
	return l, inf.Informer().HasSynced
}

// Names implements Objects. It waits for the informer's first sync, bounded by ctx.
func (o *InformerObjects) Names(ctx context.Context, res naming.Resource, namespace string, sel labels.Selector) ([]string, int, error) {
	l, synced := o.lister(gvr(res))
	if !cache.WaitForCacheSync(ctx.Done(), synced) {
		return nil, 0, fmt.Errorf("the %s cache has not synced yet: %w", res.GroupResource, ctx.Err())
	}
	var all []runtime.Object
	var err error
	if res.Namespaced {
		all, err = l.ByNamespace(namespace).List(labels.Everything())
	} else {
		all, err = l.List(labels.Everything())
	}
	if err != nil {
		return nil, 0, fmt.Errorf("list %s from cache: %w", res.GroupResource, err)
	}
	names := make([]string, 0, len(all))
	for _, obj := range all {
		m, err := meta.Accessor(obj)
		if err != nil {
			continue
		}
		if sel == nil || sel.Empty() || sel.Matches(labels.Set(m.GetLabels())) {
			names = append(names, m.GetName())
		}
	}
	return names, len(all), nil
}

// Lister returns the shared metadata informer's lister for res, starting it on first use, so
// other APIs (metrics.k8s.io) read the same cache.
func (o *InformerObjects) Lister(res naming.Resource) (cache.GenericLister, cache.InformerSynced) {
	return o.lister(gvr(res))
}
