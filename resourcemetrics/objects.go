package resourcemetrics

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/metrics"
)

// syncWait bounds how long a request waits for a cache's first sync, within its own context.
const syncWait = 10 * time.Second

// PodCache lists pods from a shared informer whose objects keep only what PodMetrics needs:
// name, namespace, labels, node and container names.
type PodCache struct {
	lister listersv1.PodLister
	synced cache.InformerSynced
	mu     sync.Mutex
	err    error // the last list or watch error
}

// NewPodCache watches pods through client until ctx ends.
func NewPodCache(ctx context.Context, client kubernetes.Interface) *PodCache {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(StripPod))
	inf := f.Core().V1().Pods()
	c := &PodCache{lister: inf.Lister(), synced: inf.Informer().HasSynced}
	if err := inf.Informer().SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		klog.ErrorS(err, "pod cache list/watch errors are only logged")
	}
	f.Start(ctx.Done())
	return c
}

// HasSynced reports whether the cache has synced once (for /readyz).
func (c *PodCache) HasSynced() bool { return c.synced() }

func (c *PodCache) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// waitSynced waits for synced within ctx and syncWait; what, err name the cache and its last error.
func waitSynced(ctx context.Context, what string, synced cache.InformerSynced, lastErr func() error) error {
	if synced() {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	if cache.WaitForCacheSync(wctx.Done(), synced) {
		return nil
	}
	msg := fmt.Sprintf("the %s cache has not synced", what)
	if ctx.Err() == nil {
		msg += fmt.Sprintf(" within %s", syncWait)
	}
	if err := lastErr(); err != nil {
		msg += fmt.Sprintf(": its list or watch failed: %v", err)
	}
	return apierrors.NewServiceUnavailable(msg)
}

func (c *PodCache) wait(ctx context.Context) error {
	return waitSynced(ctx, "pods", c.synced, c.lastErr)
}

// StripPod is the informer transform: a pod reduced to name, namespace, labels, node and container names.
func StripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: keep as is
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, UID: p.UID, ResourceVersion: p.ResourceVersion,
	}}
	out.Spec.NodeName = p.Spec.NodeName
	out.Spec.Containers = make([]corev1.Container, len(p.Spec.Containers))
	for i, c := range p.Spec.Containers {
		out.Spec.Containers[i].Name = c.Name
	}
	return out, nil
}

// Pods implements PodLister.
func (c *PodCache) Pods(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error) {
	if err := c.wait(ctx); err != nil {
		return nil, err
	}
	if namespace == "" {
		return c.lister.List(sel)
	}
	return c.lister.Pods(namespace).List(sel)
}

// Pod implements PodLister.
func (c *PodCache) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	if err := c.wait(ctx); err != nil {
		return nil, err
	}
	p, err := c.lister.Pods(namespace).Get(name)
	if err != nil {
		return nil, apierrors.NewNotFound(metrics.Resource("podmetrics"), namespace+"/"+name)
	}
	return p, nil
}

// NodeCache lists nodes from a metadata-only informer's lister.
type NodeCache struct {
	Lister cache.GenericLister
	Synced cache.InformerSynced
}

func (c *NodeCache) wait(ctx context.Context) error {
	return waitSynced(ctx, "nodes", c.Synced, func() error { return nil })
}

// Nodes implements NodeLister.
func (c *NodeCache) Nodes(ctx context.Context, sel labels.Selector) ([]*metav1.PartialObjectMetadata, bool, error) {
	if err := c.wait(ctx); err != nil {
		return nil, false, err
	}
	objs, err := c.Lister.List(sel)
	if err != nil {
		return nil, false, err
	}
	out := make([]*metav1.PartialObjectMetadata, 0, len(objs))
	for _, o := range objs {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			out = append(out, m)
		}
	}
	return out, sel == nil || sel.Empty(), nil
}

// Node implements NodeLister.
func (c *NodeCache) Node(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	if err := c.wait(ctx); err != nil {
		return nil, err
	}
	o, err := c.Lister.Get(name)
	if err != nil {
		return nil, apierrors.NewNotFound(metrics.Resource("nodemetrics"), name)
	}
	m, ok := o.(*metav1.PartialObjectMetadata)
	if !ok {
		return nil, apierrors.NewNotFound(metrics.Resource("nodemetrics"), name)
	}
	return m, nil
}
