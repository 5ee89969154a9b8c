//go:build e2e

package e2e

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// caRelease is the release TestChartCAKeptAcrossUpgrades renders; its Secrets are caTLS and caKey.
const (
	caRelease = "catest-promql-adapter"
	caTLS     = caRelease + "-tls"
	caKey     = caRelease + "-ca-key"
)

// chartSecrets renders the chart with generated certificates (tls.mode generate) with
// `helm template --dry-run=server`, so its lookups read the shared cluster's Secrets in namespace,
// and returns the rendered Secrets by name: data key -> base64 value.
func chartSecrets(t *testing.T, namespace string) map[string]map[string]string {
	t.Helper()
	// A release of its own, without APIServices, so Helm finds no object of the shared stack's in its way.
	cmd := exec.Command(helmBin(t), "--kubeconfig", st.Cluster.AdminKubeconfig(), "template", caRelease,
		filepath.Join(root, "charts/promql-adapter"), "--namespace", namespace, "--dry-run=server",
		"-f", filepath.Join(root, "testdata/chart/defaults.yaml"), "--set", "apis.custom=false,apis.external=false,tls.mode=generate")
	home := t.TempDir()
	cmd.Env = append(cmd.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template --dry-run=server: %v\n%s%s", err, out.String(), errOut.String())
	}
	secrets := map[string]map[string]string{}
	for _, doc := range strings.Split(out.String(), "\n---") {
		var obj struct {
			Kind     string                `json:"kind"`
			Metadata struct{ Name string } `json:"metadata"`
			Data     map[string]string     `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "Secret" {
			secrets[obj.Metadata.Name] = obj.Data
		}
	}
	return secrets
}

// applySecret writes a Secret into the shared cluster, owned by caRelease as an installed release's are.
func applySecret(t *testing.T, namespace, name string, data map[string]string) {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
		"metadata": map[string]any{"name": name, "namespace": namespace,
			"labels":      map[string]string{"app.kubernetes.io/managed-by": "Helm"},
			"annotations": map[string]string{"meta.helm.sh/release-name": caRelease, "meta.helm.sh/release-namespace": namespace}},
		"data": data})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(b, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// TestChartCAKeptAcrossUpgrades: the chart's generated CA key lives in promql-adapter-ca-key, never in
// the mounted promql-adapter-tls, and an upgrade signs with the same CA: read from promql-adapter-ca-key,
// or, on the first upgrade from a chart that kept ca.key in promql-adapter-tls, from there.
func TestChartCAKeptAcrossUpgrades(t *testing.T) {
	const namespace = "chart-ca-test"
	if _, err := kubectl(nil, "create", "namespace", namespace); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = kubectl(nil, "delete", "namespace", namespace, "--wait=false") })

	first := chartSecrets(t, namespace) // nothing to look up: a new CA
	tls, ca := first[caTLS], first[caKey]
	if tls == nil || ca == nil || ca["ca.key"] == "" || tls["ca.key"] != "" || tls["ca.crt"] != ca["ca.crt"] {
		t.Fatalf("first render: tls %v, ca-key Secret %v; want ca.key only in promql-adapter-ca-key", keys(tls), keys(ca))
	}

	// The old layout: ca.key in the serving Secret, no promql-adapter-ca-key.
	old := map[string]string{"ca.crt": tls["ca.crt"], "ca.key": ca["ca.key"], "tls.crt": tls["tls.crt"], "tls.key": tls["tls.key"]}
	applySecret(t, namespace, caTLS, old)
	migrated := chartSecrets(t, namespace)
	if got := migrated[caKey]; got["ca.key"] != old["ca.key"] || got["ca.crt"] != old["ca.crt"] {
		t.Error("upgrade from the old layout made a new CA instead of moving the old one to promql-adapter-ca-key")
	}
	if got := migrated[caTLS]; got["ca.key"] != "" || got["tls.crt"] != old["tls.crt"] {
		t.Errorf("upgrade from the old layout: serving Secret %v, certificate kept %v", keys(got), got["tls.crt"] == old["tls.crt"])
	}

	// The new layout: the CA from promql-adapter-ca-key, the certificate from promql-adapter-tls.
	applySecret(t, namespace, caTLS, migrated[caTLS])
	applySecret(t, namespace, caKey, migrated[caKey])
	again := chartSecrets(t, namespace)
	if again[caKey]["ca.key"] != old["ca.key"] || again[caTLS]["tls.crt"] != old["tls.crt"] || again[caTLS]["ca.key"] != "" {
		t.Error("upgrade with the new layout did not keep the CA and certificate, or put ca.key back into the serving Secret")
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
