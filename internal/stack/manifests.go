package stack

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// Manifests are the files of deploy/ the local stack applies, in order; the local overlay
// (deploy/local) replaces the Service, and the APIServices get the local port and CA.
var manifests = []string{"deploy/namespace.yaml", "deploy/rbac.yaml", "deploy/local/service.yaml", "deploy/apiservice.yaml", "deploy/wake-rbac.yaml"}

// ReadManifests decodes the YAML documents of the given files under root.
func ReadManifests(root string, files ...string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(obj) == 0 {
				continue
			}
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
	return out, nil
}

// applyManifests server-side-applies deploy/ with the local differences.
func (s *Stack) applyManifests(ctx context.Context) error {
	files := manifests
	if s.opts.ResourceMetrics {
		files = append(slices.Clone(manifests), "deploy/apiservice-resource.yaml")
	}
	objs, err := ReadManifests(s.opts.RepoRoot, files...)
	if err != nil {
		return err
	}
	ca := base64.StdEncoding.EncodeToString(s.Cluster.CACertPEM())
	for _, o := range objs {
		if o.GetKind() == "APIService" {
			if err := unstructured.SetNestedField(o.Object, int64(s.adapterPort), "spec", "service", "port"); err != nil {
				return err
			}
			if err := unstructured.SetNestedField(o.Object, ca, "spec", "caBundle"); err != nil {
				return err
			}
		}
	}
	dyn, err := dynamic.NewForConfig(s.Cluster.AdminConfig())
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(s.Kube.Discovery()))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if o.GetNamespace() != "" {
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "promql-adapter-local", Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", gvk.Kind, o.GetName(), err)
		}
	}
	return nil
}
