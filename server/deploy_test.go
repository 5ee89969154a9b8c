package server

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/naming"
)

// TestShippedConfigMapRulesLoad loads the rule file that deploy/configmap.yaml ships, at the path the
// Deployment's --config names, with the loader the server runs at start: a user who applies deploy/
// as it is gets an adapter that starts.
func TestShippedConfigMapRulesLoad(t *testing.T) {
	data, err := os.ReadFile("../deploy/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatalf("deploy/configmap.yaml: %v", err)
	}
	// The Deployment's --config is the ConfigMap's key under the rules volume's mount.
	data, err = os.ReadFile("../deploy/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(data, &d); err != nil {
		t.Fatalf("deploy/deployment.yaml: %v", err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	var config, mount string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			config = v
		}
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name {
					mount = m.MountPath
				}
			}
		}
	}
	key := strings.TrimPrefix(config, mount+"/")
	rules, ok := cm.Data[key]
	if mount == "" || key == config || !ok {
		t.Fatalf("--config=%s is not a key of ConfigMap %s mounted at %q (keys: %v)", config, cm.Name, mount, slices.Collect(maps.Keys(cm.Data)))
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, n, err := LoadRules(path, naming.BuiltinResources())
	if err != nil {
		t.Fatalf("the shipped rules do not load: %v", err)
	}
	if n == 0 || len(loaded.Metrics) == 0 {
		t.Errorf("the shipped rules serve nothing: %d rules, %d metrics", n, len(loaded.Metrics))
	}
}
