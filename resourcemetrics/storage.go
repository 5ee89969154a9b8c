// Package resourcemetrics serves the resource metrics API (metrics.k8s.io v1 and v1beta1: PodMetrics
// and NodeMetrics, what kubectl top and HPA type: Resource read) from PromQL. The storage here knows
// the API; Provider knows PromQL; the objects come from informer caches, never from a LIST per request.
package resourcemetrics

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/metrics/pkg/apis/metrics"
	"k8s.io/metrics/pkg/apis/metrics/install"
	metricsv1 "k8s.io/metrics/pkg/apis/metrics/v1"
	"k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

var (
	// Scheme holds the metrics.k8s.io types, internal, v1 and v1beta1.
	Scheme = runtime.NewScheme()
	// Codecs serve the metrics.k8s.io API group.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
}

// Versions are the metrics.k8s.io versions served, preferred first.
var Versions = []string{metricsv1.SchemeGroupVersion.Version, v1beta1.SchemeGroupVersion.Version}

// Getter answers PodMetrics and NodeMetrics for objects the storage already selected.
type Getter interface {
	// PodMetrics returns the metrics of the pods that have data for every container; namespace is the
	// request's ("" for all namespaces).
	PodMetrics(ctx context.Context, namespace string, pods []*corev1.Pod) ([]metrics.PodMetrics, error)
	// NodeMetrics returns the metrics of the nodes that have data; all says the request selects every node.
	NodeMetrics(ctx context.Context, nodes []*metav1.PartialObjectMetadata, all bool) ([]metrics.NodeMetrics, error)
}

// PodLister lists pods from a cache.
type PodLister interface {
	// Pods returns the pods of namespace ("" for all) matching sel.
	Pods(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error)
	// Pod returns one pod, or a NotFound error.
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
}

// NodeLister lists node metadata from a cache.
type NodeLister interface {
	// Nodes returns the nodes matching sel, and whether they are every node.
	Nodes(ctx context.Context, sel labels.Selector) ([]*metav1.PartialObjectMetadata, bool, error)
	// Node returns one node, or a NotFound error.
	Node(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error)
}

// Install adds metrics.k8s.io v1 and v1beta1 to server.
func Install(server *genericapiserver.GenericAPIServer, g Getter, pods PodLister, nodes NodeLister) error {
	info := genericapiserver.NewDefaultAPIGroupInfo(metrics.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	storage := map[string]rest.Storage{
		"pods":  &podStorage{getter: g, pods: pods, table: rest.NewDefaultTableConvertor(metrics.Resource("podmetrics"))},
		"nodes": &nodeStorage{getter: g, nodes: nodes, table: rest.NewDefaultTableConvertor(metrics.Resource("nodemetrics"))},
	}
	for _, v := range Versions {
		info.VersionedResourcesStorageMap[v] = storage
	}
	if err := server.InstallAPIGroup(&info); err != nil {
		return fmt.Errorf("install %s: %w", metrics.GroupName, err)
	}
	return nil
}

type podStorage struct {
	getter Getter
	pods   PodLister
	table  rest.TableConvertor
}

var (
	_ rest.Storage              = &podStorage{}
	_ rest.KindProvider         = &podStorage{}
	_ rest.Getter               = &podStorage{}
	_ rest.Lister               = &podStorage{}
	_ rest.Scoper               = &podStorage{}
	_ rest.SingularNameProvider = &podStorage{}
)

func (s *podStorage) New() runtime.Object     { return &metrics.PodMetrics{} }
func (s *podStorage) Destroy()                {}
func (s *podStorage) Kind() string            { return "PodMetrics" }
func (s *podStorage) NewList() runtime.Object { return &metrics.PodMetricsList{} }
func (s *podStorage) NamespaceScoped() bool   { return true }
func (s *podStorage) GetSingularName() string { return "" }

func (s *podStorage) ConvertToTable(ctx context.Context, obj, opts runtime.Object) (*metav1.Table, error) {
	return s.table.ConvertToTable(ctx, obj, opts)
}

// List answers GET .../pods and .../namespaces/N/pods with label and field selectors.
func (s *podStorage) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	sel, fsel := selectors(opts)
	pods, err := s.pods.Pods(ctx, ns, sel)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("pods cache: %v", err))
	}
	if fsel != nil {
		pods = slices.DeleteFunc(pods, func(p *corev1.Pod) bool {
			return !fsel.Matches(fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace})
		})
	}
	items, err := s.getter.PodMetrics(ctx, ns, pods)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(items, func(a, b metrics.PodMetrics) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return &metrics.PodMetricsList{Items: items}, nil
}

// Get answers GET .../namespaces/N/pods/NAME: NotFound when the pod does not exist or has no data.
func (s *podStorage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	pod, err := s.pods.Pod(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	items, err := s.getter.PodMetrics(ctx, ns, []*corev1.Pod{pod})
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, apierrors.NewNotFound(metrics.Resource("podmetrics"), ns+"/"+name)
	}
	return &items[0], nil
}

type nodeStorage struct {
	getter Getter
	nodes  NodeLister
	table  rest.TableConvertor
}

var (
	_ rest.Storage              = &nodeStorage{}
	_ rest.KindProvider         = &nodeStorage{}
	_ rest.Getter               = &nodeStorage{}
	_ rest.Lister               = &nodeStorage{}
	_ rest.Scoper               = &nodeStorage{}
	_ rest.SingularNameProvider = &nodeStorage{}
)

func (s *nodeStorage) New() runtime.Object     { return &metrics.NodeMetrics{} }
func (s *nodeStorage) Destroy()                {}
func (s *nodeStorage) Kind() string            { return "NodeMetrics" }
func (s *nodeStorage) NewList() runtime.Object { return &metrics.NodeMetricsList{} }
func (s *nodeStorage) NamespaceScoped() bool   { return false }
func (s *nodeStorage) GetSingularName() string { return "" }

func (s *nodeStorage) ConvertToTable(ctx context.Context, obj, opts runtime.Object) (*metav1.Table, error) {
	return s.table.ConvertToTable(ctx, obj, opts)
}

// List answers GET .../nodes with label and field selectors.
func (s *nodeStorage) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	sel, fsel := selectors(opts)
	nodes, all, err := s.nodes.Nodes(ctx, sel)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("nodes cache: %v", err))
	}
	if fsel != nil {
		n := len(nodes)
		nodes = slices.DeleteFunc(nodes, func(o *metav1.PartialObjectMetadata) bool {
			return !fsel.Matches(fields.Set{"metadata.name": o.Name})
		})
		all = all && n == len(nodes)
	}
	items, err := s.getter.NodeMetrics(ctx, nodes, all)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(items, func(a, b metrics.NodeMetrics) int { return strings.Compare(a.Name, b.Name) })
	return &metrics.NodeMetricsList{Items: items}, nil
}

// Get answers GET .../nodes/NAME: NotFound when the node does not exist or has no data.
func (s *nodeStorage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	node, err := s.nodes.Node(ctx, name)
	if err != nil {
		return nil, err
	}
	items, err := s.getter.NodeMetrics(ctx, []*metav1.PartialObjectMetadata{node}, false)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, apierrors.NewNotFound(metrics.Resource("nodemetrics"), name)
	}
	return &items[0], nil
}

func selectors(opts *metainternalversion.ListOptions) (labels.Selector, fields.Selector) {
	sel := labels.Everything()
	var fsel fields.Selector
	if opts != nil {
		if opts.LabelSelector != nil {
			sel = opts.LabelSelector
		}
		if opts.FieldSelector != nil && !opts.FieldSelector.Empty() {
			fsel = opts.FieldSelector
		}
	}
	return sel, fsel
}
