package localcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// The derived stages keep every stage, take annotated pods out of pod-ready and add the stage that starts them.
func TestWriteStages(t *testing.T) {
	src := filepath.Join(t.TempDir(), "in.yaml")
	in := `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  next:
    delete: true
`
	if err := os.WriteFile(src, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out.yaml")
	if err := writeStages(src, dst); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(b)), 4096)
	stages := map[string]map[string]any{}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc == nil {
			continue
		}
		stages[doc["metadata"].(map[string]any)["name"].(string)] = doc
	}
	if len(stages) != 3 {
		t.Fatalf("stages %v, want pod-ready, pod-delete and pod-start-ready-when-listening", len(stages))
	}
	exprs := func(name string) []any {
		return stages[name]["spec"].(map[string]any)["selector"].(map[string]any)["matchExpressions"].([]any)
	}
	key := `.metadata.annotations["` + AnnotationReadyWhenListening + `"]`
	has := func(name, op string) bool {
		for _, e := range exprs(name) {
			m := e.(map[string]any)
			if m["key"] == key && m["operator"] == op {
				return true
			}
		}
		return false
	}
	if !has("pod-ready", "DoesNotExist") || len(exprs("pod-ready")) != 2 {
		t.Errorf("pod-ready selector %v: want the original expression and the annotation DoesNotExist", exprs("pod-ready"))
	}
	if !has("pod-start-ready-when-listening", "Exists") {
		t.Errorf("pod-start-ready-when-listening selector %v: want the annotation Exists", exprs("pod-start-ready-when-listening"))
	}
	// The real file of make cluster-bins, when built, must have the shape writeStages needs.
	if bin, err := BinDirFromEnv(); err == nil {
		if err := writeStages(filepath.Join(bin, kwokStagesName), filepath.Join(t.TempDir(), "real.yaml")); err != nil {
			t.Fatal(err)
		}
	}
}
