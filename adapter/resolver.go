package adapter

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

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
