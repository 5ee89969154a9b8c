package adapter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/naming"
)

// DefaultSyncTimeout bounds how long a request waits for an object cache's first sync.
const DefaultSyncTimeout = 5 * time.Second

// Objects lists the objects a request selects.
type Objects interface {
	// Names returns the names of the objects of res in namespace that match sel,
	// and how many objects of res the namespace holds in all.
	Names(ctx context.Context, res naming.Resource, namespace string, sel labels.Selector) (names []string, total int, err error)
}

// InformerObjects answers Objects from metadata-only shared informers, so no request lists from the API server.
type InformerObjects struct {
	// SyncTimeout bounds a request's wait for a cache's first sync (DefaultSyncTimeout when 0);
	// set it before first use.
	SyncTimeout time.Duration

	factory metadatainformer.SharedInformerFactory
	stop    <-chan struct{}
	mu      sync.Mutex
	started map[schema.GroupVersionResource]*cacheState
}

// cacheState is one resource's informer and the last error its list or watch met.
type cacheState struct {
	lister cache.GenericLister
	synced cache.InformerSynced
	mu     sync.Mutex
	err    error // last list or watch error
}

func (c *cacheState) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// NewInformerObjects watches object metadata through client; informers start on first use and stop with ctx.
func NewInformerObjects(ctx context.Context, client metadata.Interface, resync time.Duration) *InformerObjects {
	return &InformerObjects{
		SyncTimeout: DefaultSyncTimeout,
		factory:     metadatainformer.NewSharedInformerFactory(client, resync),
		stop:        ctx.Done(),
		started:     map[schema.GroupVersionResource]*cacheState{},
	}
}

// Warm starts the informers for the resources that rules describe, so the first request finds a filled cache.
func (o *InformerObjects) Warm(resources []naming.Resource) {
	for _, r := range resources {
		o.cache(gvr(r))
	}
}

func gvr(r naming.Resource) schema.GroupVersionResource {
	return r.GroupResource.WithVersion(r.Version)
}

func (o *InformerObjects) cache(g schema.GroupVersionResource) *cacheState {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.started[g]; ok {
		return c
	}
	inf := o.factory.ForResource(g)
	c := &cacheState{lister: inf.Lister(), synced: inf.Informer().HasSynced}
	// Both must be set before the informer starts; the factory creates it just above.
	if err := inf.Informer().SetTransform(stripMetadata); err != nil {
		klog.ErrorS(err, "object cache keeps full metadata", "resource", g)
	}
	if err := inf.Informer().SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		klog.ErrorS(err, "object cache list/watch errors are only logged", "resource", g)
	}
	o.started[g] = c
	o.factory.Start(o.stop)
	return c
}

// stripMetadata keeps what the caches are read for (namespace, name, labels) and what the
// informer needs (resource version, UID), dropping managed fields, annotations, owner
// references and finalizers, which can be most of an object's metadata.
func stripMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	m.ManagedFields = nil
	m.Annotations = nil
	m.OwnerReferences = nil
	m.Finalizers = nil
	return m, nil
}

// Names implements Objects. It waits for the informer's first sync, bounded by ctx and SyncTimeout.
func (o *InformerObjects) Names(ctx context.Context, res naming.Resource, namespace string, sel labels.Selector) ([]string, int, error) {
	c := o.cache(gvr(res))
	if !c.synced() {
		timeout := o.SyncTimeout
		if timeout <= 0 {
			timeout = DefaultSyncTimeout
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		ok := cache.WaitForCacheSync(wctx.Done(), c.synced)
		cancel()
		if !ok {
			return nil, 0, notSynced(res, c.lastErr(), timeout)
		}
	}
	var all []runtime.Object
	var err error
	if res.Namespaced {
		all, err = c.lister.ByNamespace(namespace).List(labels.Everything())
	} else {
		all, err = c.lister.List(labels.Everything())
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
	c := o.cache(gvr(res))
	return c.lister, c.synced
}

// notSynced explains why a cache has not synced: a missing permission by name, else the last error.
func notSynced(res naming.Resource, err error, waited time.Duration) error {
	gr := res.GroupResource
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the %s cache has not synced: the adapter may not list and watch %s (grant list and watch on resource %q in API group %q to its service account): %w",
			gr, gr, gr.Resource, gr.Group, err)
	case err != nil:
		return fmt.Errorf("the %s cache has not synced within %s: %w", gr, waited, err)
	default:
		return fmt.Errorf("the %s cache has not synced within %s", gr, waited)
	}
}

// Unsynced reports the caches that have not synced yet and are still trying, for /readyz. A cache
// refused by RBAC or for a resource the API server does not serve is left out: waiting does not
// help it, and every request for it gets a 503 that names the cause.
func (o *InformerObjects) Unsynced() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for g, c := range o.started {
		if c.synced() {
			continue
		}
		err := c.lastErr()
		switch {
		case err == nil:
			out = append(out, g.GroupResource().String())
		case apierrors.IsForbidden(err) || apierrors.IsNotFound(err):
		default:
			out = append(out, fmt.Sprintf("%s (%v)", g.GroupResource(), err))
		}
	}
	if len(out) == 0 {
		return nil
	}
	sort.Strings(out)
	return errors.New("object caches not synced: " + strings.Join(out, ", "))
}
