package naming

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Resource is a Kubernetes resource as the API server knows it.
type Resource struct {
	GroupResource schema.GroupResource // e.g. {apps deployments}
	Version       string               // preferred version, for the described object's apiVersion
	Kind          string               // e.g. Deployment
	Singular      string               // e.g. deployment; the default label holding an object's name
	Namespaced    bool
}

// GroupVersion is the described object's apiVersion, e.g. "apps/v1" or "v1".
func (r Resource) GroupVersion() string {
	return schema.GroupVersion{Group: r.GroupResource.Group, Version: r.Version}.String()
}

// Resolver turns a rule's resource string ("pods", "deployments.apps", "deployment") into a Resource.
type Resolver interface {
	Resolve(resource string) (Resource, error)
}

// StaticResolver resolves a fixed set of resources; it backs tests and clusterless local runs.
type StaticResolver map[string]Resource

// BuiltinResources is a StaticResolver for the core and apps resources an HPA usually describes.
func BuiltinResources() StaticResolver {
	s := StaticResolver{}
	for _, r := range []Resource{
		{GroupResource: schema.GroupResource{Resource: "pods"}, Version: "v1", Kind: "Pod", Singular: "pod", Namespaced: true},
		{GroupResource: schema.GroupResource{Resource: "services"}, Version: "v1", Kind: "Service", Singular: "service", Namespaced: true},
		{GroupResource: schema.GroupResource{Resource: "namespaces"}, Version: "v1", Kind: "Namespace", Singular: "namespace"},
		{GroupResource: schema.GroupResource{Resource: "nodes"}, Version: "v1", Kind: "Node", Singular: "node"},
		{GroupResource: schema.GroupResource{Resource: "persistentvolumeclaims"}, Version: "v1", Kind: "PersistentVolumeClaim", Singular: "persistentvolumeclaim", Namespaced: true},
		{GroupResource: schema.GroupResource{Group: "apps", Resource: "deployments"}, Version: "v1", Kind: "Deployment", Singular: "deployment", Namespaced: true},
		{GroupResource: schema.GroupResource{Group: "apps", Resource: "statefulsets"}, Version: "v1", Kind: "StatefulSet", Singular: "statefulset", Namespaced: true},
		{GroupResource: schema.GroupResource{Group: "apps", Resource: "replicasets"}, Version: "v1", Kind: "ReplicaSet", Singular: "replicaset", Namespaced: true},
		{GroupResource: schema.GroupResource{Group: "apps", Resource: "daemonsets"}, Version: "v1", Kind: "DaemonSet", Singular: "daemonset", Namespaced: true},
		{GroupResource: schema.GroupResource{Group: "batch", Resource: "jobs"}, Version: "v1", Kind: "Job", Singular: "job", Namespaced: true},
		{GroupResource: schema.GroupResource{Group: "networking.k8s.io", Resource: "ingresses"}, Version: "v1", Kind: "Ingress", Singular: "ingress", Namespaced: true},
	} {
		s.Add(r)
	}
	return s
}

// Add registers r under its plural, singular and kind, each bare and with the group.
func (s StaticResolver) Add(r Resource) {
	for _, n := range []string{r.GroupResource.Resource, r.Singular, strings.ToLower(r.Kind)} {
		s[n+"."+r.GroupResource.Group] = r
		if r.GroupResource.Group == "" || s[n].Kind == "" {
			s[n] = r
		}
	}
}

// Resolve implements Resolver.
func (s StaticResolver) Resolve(resource string) (Resource, error) {
	if r, ok := s[strings.ToLower(resource)]; ok {
		return r, nil
	}
	known := map[string]bool{}
	for _, r := range s {
		known[r.GroupResource.String()] = true
	}
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	return Resource{}, fmt.Errorf("unknown resource %q (known: %s)", resource, strings.Join(names, ", "))
}

// Resource labels: the defaults that map Prometheus labels to Kubernetes objects.
const (
	// NamespaceLabel is the conventional label holding an object's namespace.
	NamespaceLabel = "namespace"
)

// labelsFor returns the Prometheus labels that identify objects of res under the rule's overrides.
func labelsFor(res Resource, m LabelMapping) (nsLabel, nameLabel string) {
	nsLabel, nameLabel = m.Namespace, m.Name
	if nsLabel == "" {
		nsLabel = NamespaceLabel
	}
	if nameLabel == "" {
		nameLabel = res.Singular
	}
	if !res.Namespaced {
		nsLabel = ""
	}
	return nsLabel, nameLabel
}
