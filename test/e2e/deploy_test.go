//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDeployManifests applies all of deploy/ (its kustomization) to the real kube-apiserver with
// --dry-run=server: every object passes the server's schema validation and admission, including
// those the local stack does not run (the Deployments, PDBs, NetworkPolicy, ConfigMap).
func TestDeployManifests(t *testing.T) {
	out, err := exec.Command(filepath.Join(binDir, "kubectl"), "--kubeconfig", st.Cluster.AdminKubeconfig(),
		"apply", "--dry-run=server", "-k", filepath.Join(root, "deploy"), "-o", "name").Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("kubectl apply --dry-run=server -k deploy: %v\n%s%s", err, out, stderr)
	}
	got := strings.Fields(string(out))
	for _, want := range []string{
		"deployment.apps/promql-adapter", "deployment.apps/promql-wake",
		"poddisruptionbudget.policy/promql-adapter", "networkpolicy.networking.k8s.io/promql-wake",
		"deployment.apps/promql-activator", "poddisruptionbudget.policy/promql-activator", "networkpolicy.networking.k8s.io/promql-activator",
		"networkpolicy.networking.k8s.io/promql-adapter", "configmap/promql-adapter-rules",
		"apiservice.apiregistration.k8s.io/v1beta2.custom.metrics.k8s.io",
		"apiservice.apiregistration.k8s.io/v1beta1.custom.metrics.k8s.io",
		"apiservice.apiregistration.k8s.io/v1beta1.external.metrics.k8s.io",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("the server-side dry run did not accept %s; it accepted:\n%s", want, out)
		}
	}
	t.Logf("%d objects of deploy/ pass the server-side dry run", len(got))
}
