package adapter

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/naming"
)

// MapperResolver resolves rule resources through the API server's discovery, so any
// resource the cluster serves (CRDs included) can be described.
type MapperResolver struct {
	Mapper meta.RESTMapper
}

// Resolve implements naming.Resolver.
func (r MapperResolver) Resolve(resource string) (naming.Resource, error) {
	gr := schema.ParseGroupResource(strings.ToLower(resource))
	gvr, err := r.Mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return naming.Resource{}, fmt.Errorf("resource %q is not served by the cluster: %w", resource, err)
	}
	gvk, err := r.Mapper.KindFor(gvr)
	if err != nil {
		return naming.Resource{}, fmt.Errorf("resource %q: %w", resource, err)
	}
	mapping, err := r.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return naming.Resource{}, fmt.Errorf("resource %q: %w", resource, err)
	}
	singular, err := r.Mapper.ResourceSingularizer(gvr.Resource)
	if err != nil || singular == "" {
		singular = strings.ToLower(gvk.Kind)
	}
	return naming.Resource{
		GroupResource: gvr.GroupResource(),
		Version:       gvr.Version,
		Kind:          gvk.Kind,
		Singular:      singular,
		Namespaced:    mapping.Scope.Name() == meta.RESTScopeNameNamespace,
	}, nil
}

// RefreshingResolver resolves through Resolver and, on a miss, has Refresh reread the API server's
// discovery (at most once per MinInterval) and tries again, so a rule can name a CRD installed after start.
type RefreshingResolver struct {
	Resolver    naming.Resolver
	Refresh     func() error
	MinInterval time.Duration

	mu   sync.Mutex
	last time.Time
}

// Resolve implements naming.Resolver.
func (r *RefreshingResolver) Resolve(resource string) (naming.Resource, error) {
	res, err := r.Resolver.Resolve(resource)
	if err == nil || !r.refresh() {
		return res, err
	}
	return r.Resolver.Resolve(resource)
}

// refresh rereads discovery unless it did so within MinInterval; it reports whether it did.
func (r *RefreshingResolver) refresh() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && time.Since(r.last) < r.MinInterval {
		return false
	}
	r.last = time.Now()
	if err := r.Refresh(); err != nil {
		klog.ErrorS(err, "rereading resource discovery after a miss")
		return false
	}
	return true
}
