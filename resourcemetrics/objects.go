package resourcemetrics

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/metrics"
)

// syncWait bounds how long a request waits for a cache's first sync.
const syncWait = 10 * time.Second

// PodCache lists pods from a shared informer whose objects keep only what PodMetrics needs:
// name, namespace, labels, node and container names.
type PodCache struct {
	lister listersv1.PodLister
	synced cache.InformerSynced
}

// NewPodCache watches pods through client until ctx ends.
func NewPodCache(ctx context.Context, client kubernetes.Interface) *PodCache {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(StripPod))
	inf := f.Core().V1().Pods()
	c := &PodCache{lister: inf.Lister(), synced: inf.Informer().HasSynced}
	f.Start(ctx.Done())
	return c
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

func (c *PodCache) wait() error {
	ctx, cancel := context.WithTimeout(context.Background(), syncWait)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return fmt.Errorf("the pods cache has not synced within %s", syncWait)
	}
	return nil
}

// Pods implements PodLister.
func (c *PodCache) Pods(namespace string, sel labels.Selector) ([]*corev1.Pod, error) {
	if err := c.wait(); err != nil {
		return nil, err
	}
	if namespace == "" {
		return c.lister.List(sel)
	}
	return c.lister.Pods(namespace).List(sel)
}

// Pod implements PodLister.
func (c *PodCache) Pod(namespace, name string) (*corev1.Pod, error) {
	if err := c.wait(); err != nil {
		return nil, apierrors.NewServiceUnavailable(err.Error())
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

func (c *NodeCache) wait() error {
	ctx, cancel := context.WithTimeout(context.Background(), syncWait)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), c.Synced) {
		return fmt.Errorf("the nodes cache has not synced within %s", syncWait)
	}
	return nil
}

// Nodes implements NodeLister.
func (c *NodeCache) Nodes(sel labels.Selector) ([]*metav1.PartialObjectMetadata, bool, error) {
	if err := c.wait(); err != nil {
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
func (c *NodeCache) Node(name string) (*metav1.PartialObjectMetadata, error) {
	if err := c.wait(); err != nil {
		return nil, apierrors.NewServiceUnavailable(err.Error())
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
