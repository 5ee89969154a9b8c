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
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/naming"
)

// DefaultSyncTimeout bounds how long a request waits for an object cache's first sync.
const DefaultSyncTimeout = 5 * time.Second

// DefaultReadyTimeout bounds how long /readyz waits for the first sync of the caches started with the server.
const DefaultReadyTimeout = 30 * time.Second

// Objects lists the objects a request selects.
type Objects interface {
	// Names returns the names of the objects of res in namespace that match sel,
	// and how many objects of res the namespace holds in all.
	Names(ctx context.Context, res naming.Resource, namespace string, sel labels.Selector) (names []string, total int, err error)
}

// InformerObjects answers Objects from metadata-only informers, one per resource, so no request
// lists from the API server. A resource's informer starts on first use and stops when a Warm no
// longer names it.
type InformerObjects struct {
	// SyncTimeout bounds a request's wait for a cache's first sync (DefaultSyncTimeout when 0);
	// set it before first use.
	SyncTimeout time.Duration
	// ReadyTimeout bounds how long Unsynced holds readiness back for the caches' first sync
	// (DefaultReadyTimeout when 0), counted from NewInformerObjects.
	ReadyTimeout time.Duration

	client  metadata.Interface
	resync  time.Duration
	base    context.Context // every informer stops with it
	created time.Time

	mu      sync.Mutex
	started map[schema.GroupVersionResource]*cacheState
	extra   map[string]cache.InformerSynced // other caches readiness waits for (GateOn)
	ready   bool                            // the readiness gate has opened for good
}

// cacheState is one resource's informer and the last error its list or watch met.
type cacheState struct {
	lister cache.GenericLister
	synced cache.InformerSynced
	stop   context.CancelFunc
	pinned bool // handed out by Lister: kept when rules stop naming the resource
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
		SyncTimeout:  DefaultSyncTimeout,
		ReadyTimeout: DefaultReadyTimeout,
		client:       client,
		resync:       resync,
		base:         ctx,
		created:      time.Now(),
		started:      map[schema.GroupVersionResource]*cacheState{},
		extra:        map[string]cache.InformerSynced{},
	}
}

// Warm starts the informers for the resources that rules describe, so the first request finds a
// filled cache, and stops those of resources no longer named (unless Lister handed them out).
func (o *InformerObjects) Warm(resources []naming.Resource) {
	keep := map[schema.GroupVersionResource]bool{}
	for _, r := range resources {
		g := gvr(r)
		keep[g] = true
		o.cache(g)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for g, c := range o.started {
		if !keep[g] && !c.pinned {
			c.stop()
			delete(o.started, g)
			klog.InfoS("object cache stopped: no rule names its resource any more", "resource", g.GroupResource())
		}
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
	inf := metadatainformer.NewFilteredMetadataInformer(o.client, g, metav1.NamespaceAll, o.resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil)
	ctx, stop := context.WithCancel(o.base)
	c := &cacheState{lister: inf.Lister(), synced: inf.Informer().HasSynced, stop: stop}
	// Both must be set before the informer starts.
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
	go inf.Informer().RunWithContext(ctx)
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

// Names implements Objects. While a cache has not synced it waits, bounded by ctx and SyncTimeout,
// until it syncs or its list or watch fails; a failed cache answers at once with the cause (its
// informer keeps retrying in the background), so requests for it do not pile up.
func (o *InformerObjects) Names(ctx context.Context, res naming.Resource, namespace string, sel labels.Selector) ([]string, int, error) {
	c := o.cache(gvr(res))
	if !c.synced() {
		timeout := o.SyncTimeout
		if timeout <= 0 {
			timeout = DefaultSyncTimeout
		}
		// The poll's own error (ctx or SyncTimeout ended) says less than the cache's state below.
		_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
			return c.synced() || c.lastErr() != nil, nil
		})
		if !c.synced() {
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

// Lister returns the metadata informer's lister for res, starting it on first use, so other APIs
// (metrics.k8s.io) read the same cache. It is never stopped by Warm.
func (o *InformerObjects) Lister(res naming.Resource) (cache.GenericLister, cache.InformerSynced) {
	c := o.cache(gvr(res))
	o.mu.Lock()
	c.pinned = true
	o.mu.Unlock()
	return c.lister, c.synced
}

// GateOn makes Unsynced wait, within ReadyTimeout, for another cache's first sync too (such as
// metrics.k8s.io's pod cache).
func (o *InformerObjects) GateOn(name string, synced cache.InformerSynced) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.extra[name] = synced
}

// notSynced explains why a cache has not synced: a missing permission by name, else the last error.
func notSynced(res naming.Resource, err error, waited time.Duration) error {
	gr := res.GroupResource
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the %s cache has not synced: the adapter may not list and watch %s (grant list and watch on resource %q in API group %q to its service account): %w",
			gr, gr, gr.Resource, gr.Group, err)
	case err != nil:
		return fmt.Errorf("the %s cache has not synced: its list or watch failed (retried in the background): %w", gr, err)
	default:
		return fmt.Errorf("the %s cache has not synced within %s", gr, waited)
	}
}

// Unsynced is /readyz's object-caches check. It reports the caches that have not synced yet and
// are still trying, but only until ReadyTimeout after start (or until all have synced, whichever
// comes first); after that it never fails again, so one resource whose list keeps failing (a CRD's
// conversion webhook down, an aggregated API answering 503) cannot take every replica, and with
// them the whole APIService, out of service: only the requests that need that cache fail, with a
// 503 naming the cause (Names). A cache refused by RBAC or for a resource the API server does not
// serve is never waited for.
func (o *InformerObjects) Unsynced() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ready {
		return nil
	}
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
	for name, synced := range o.extra {
		if !synced() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	switch {
	case len(out) == 0:
		o.ready = true
		klog.InfoS("object caches synced")
		return nil
	case time.Since(o.created) >= timeout:
		o.ready = true
		klog.InfoS("readiness no longer waits for object caches; requests that need them get a 503 naming the cause until they sync",
			"waited", timeout, "unsynced", out)
		return nil
	}
	return errors.New("object caches not synced: " + strings.Join(out, ", "))
}

// Running lists the resources whose caches run, sorted.
func (o *InformerObjects) Running() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.started))
	for g := range o.started {
		out = append(out, g.GroupResource().String())
	}
	sort.Strings(out)
	return out
}
