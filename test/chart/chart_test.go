// Package chart tests charts/promql-adapter with the Helm binary the Makefile builds
// (PROMQL_ADAPTER_HELM, make helm): lint, the rendered objects against golden files for three
// value sets, the values schema, and deploy/ as the chart's rendering.
package chart

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const chartDir = "../../charts/promql-adapter"

// ValueSets are the golden value files, testdata/chart/NAME.yaml.
var ValueSets = []string{"defaults", "pa-custom-resource", "certmanager-wake", "operator-hooks", "beside-keda"}

func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("PROMQL_ADAPTER_HELM")
	if h == "" {
		t.Fatal("PROMQL_ADAPTER_HELM is not set: run `make helm` and point it at the binary (make unit does)")
	}
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("PROMQL_ADAPTER_HELM: %v (run make helm)", err)
	}
	return h
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// Render is `helm template` of the chart with a value file, as release promql-adapter in custom-metrics.
func Render(t *testing.T, values string, extra ...string) string {
	t.Helper()
	args := append([]string{"template", "promql-adapter", chartDir, "--namespace", "custom-metrics", "-f", values}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// generated are the values the chart makes at random (certificates, keys, the wake token).
var generated = regexp.MustCompile(`(?m)^(\s+(?:ca\.crt|ca\.key|tls\.crt|tls\.key|token|caBundle)): "?[A-Za-z0-9+/=]{20,}"?$`)

// Mask replaces the generated values with a placeholder, so the golden files are stable.
func Mask(s string) string { return generated.ReplaceAllString(s, "$1: <generated>") }

func TestLintStrict(t *testing.T) {
	for _, v := range ValueSets {
		t.Run(v, func(t *testing.T) {
			out, err := helm(t, "lint", "--strict", chartDir, "-f", filepath.Join("../../testdata/chart", v+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("lint: %s", out)
			}
		})
	}
}

func TestTemplateGolden(t *testing.T) {
	for _, v := range ValueSets {
		t.Run(v, func(t *testing.T) {
			got := Mask(Render(t, filepath.Join("../../testdata/chart", v+".yaml")))
			golden := filepath.Join("../../testdata/golden/chart", v+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("helm template with %s differs from %s (go test ./test/chart -update to accept):\n%s", v, golden, diff(string(want), got))
			}
		})
	}
}

// TestTemplateContents checks what the golden files must hold, so an -update cannot accept a regression.
func TestTemplateContents(t *testing.T) {
	def := Render(t, "../../testdata/chart/defaults.yaml")
	for _, s := range []string{
		"name: v1beta2.custom.metrics.k8s.io", "name: v1beta1.custom.metrics.k8s.io", "name: v1beta1.external.metrics.k8s.io",
		"kind: PodDisruptionBudget", "kind: NetworkPolicy", "replicas: 2", "runAsUser: 65532", "readOnlyRootFilesystem: true",
		"startupProbe:", "topologySpreadConstraints:", "podAntiAffinity:",
	} {
		if !strings.Contains(def, s) {
			t.Errorf("defaults lack %q", s)
		}
	}
	for _, s := range []string{"group: metrics.k8s.io", "kind: ServiceMonitor", "promql-wake", "promql-activator", "--apis=", "kind: PrometheusRule", "grafana_dashboard"} {
		if strings.Contains(def, s) {
			t.Errorf("defaults hold %q", strings.TrimSpace(s))
		}
	}
	// tls.mode controller (the default): no certificate, no caBundle, nothing random; the adapter keeps its
	// Secret and claims the APIServices, with RBAC limited to their names.
	for _, s := range []string{"--tls-secret=custom-metrics/promql-adapter-tls", "--apiservice=v1beta1.external.metrics.k8s.io",
		"--apiservice-service=custom-metrics/promql-adapter:443", "resourceNames: [promql-adapter-tls]", `path: "/readyz?exclude=apiservices"`,
		"  - v1beta2.custom.metrics.k8s.io\n  - v1beta1.custom.metrics.k8s.io\n  - v1beta1.external.metrics.k8s.io\n  verbs: [get, list, watch, update, patch]"} {
		if !strings.Contains(def, s) {
			t.Errorf("defaults (tls.mode controller) lack %q", s)
		}
	}
	for _, s := range []string{"caBundle:", "kind: Secret", "--tls-cert-file"} {
		if strings.Contains(def, s) {
			t.Errorf("defaults (tls.mode controller) hold %q", s)
		}
	}
	if again := Render(t, "../../testdata/chart/defaults.yaml"); again != def {
		t.Error("tls.mode controller: two renders differ")
	}
	// Beside KEDA's chart: the external APIService is not templated, but still claimed.
	beside := Render(t, "../../testdata/chart/defaults.yaml", "--set", "apiService.ownedElsewhere={v1beta1.external.metrics.k8s.io}")
	if strings.Contains(beside, "name: v1beta1.external.metrics.k8s.io") || !strings.Contains(beside, "--apiservice=v1beta1.external.metrics.k8s.io") {
		t.Error("apiService.ownedElsewhere: the external APIService is templated, or not claimed")
	}
	if _, err := helm(t, "template", "x", chartDir, "--set", "apiService.controller=false"); err == nil || !strings.Contains(err.Error(), "need apiService.controller: true") {
		t.Errorf("tls.mode controller without the controller: %v", err)
	}

	// tls.mode generate: the generated CA is the APIServices' caBundle and signed the serving certificate, and the
	// controller asserts it from the mounted Secret.
	gen := Render(t, "../../testdata/chart/defaults.yaml", "--set", "tls.mode=generate")
	if !strings.Contains(gen, "type: kubernetes.io/tls") || !strings.Contains(gen, "--apiservice-ca-file=/etc/promql-adapter/tls/ca.crt") {
		t.Error("tls.mode generate lacks its Secret or --apiservice-ca-file")
	}
	ca := regexp.MustCompile(`(?m)^  ca\.crt: (\S+)$`).FindStringSubmatch(gen)
	bundle := regexp.MustCompile(`(?m)^  caBundle: "(\S+)"$`).FindAllStringSubmatch(gen, -1)
	if ca == nil || len(bundle) != 3 || bundle[0][1] != ca[1] {
		t.Errorf("caBundle is not the generated CA (ca %v, %d bundles)", ca != nil, len(bundle))
	}

	pa := Render(t, "../../testdata/chart/pa-custom-resource.yaml")
	for _, s := range []string{"--apis=custom,resource", "--config-format=prometheus-adapter", "name: v1beta1.metrics.k8s.io", "name: v1.metrics.k8s.io",
		"--prometheus-header=X-Scope-OrgID=tenant-a", "--prometheus-client-config=/etc/promql-adapter/prometheus/client.yaml", "resourceRules:"} {
		if !strings.Contains(pa, s) {
			t.Errorf("prometheus-adapter values lack %q", s)
		}
	}
	if strings.Contains(pa, "external.metrics.k8s.io") {
		t.Error("external metrics registered though apis.external is false")
	}
	// The user's rule file replaces the chart's example rules; Helm would merge two maps.
	if strings.Contains(pa, "    metrics:\n") || strings.Contains(pa, "elu_utilization") {
		t.Error("the prometheus-adapter rule file holds the chart's example native rules too")
	}

	cm := Render(t, "../../testdata/chart/certmanager-wake.yaml")
	for _, s := range []string{"kind: Certificate", "cert-manager.io/inject-ca-from: custom-metrics/promql-adapter", "kind: ServiceMonitor",
		"name: promql-wake", "--leader-elect=true", "name: promql-wake-token", "kind: Issuer",
		"httpGet: {path: /readyz, port: https, scheme: HTTPS}\n          periodSeconds: 2",
		// Every healthy replica is Ready; the push Service selects the leader's pod label.
		"type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}", "- --leader-pod-label=promql-adapter.io/wake-leader",
		"    app.kubernetes.io/name: promql-wake\n    app.kubernetes.io/instance: promql-adapter\n    promql-adapter.io/wake-leader: \"true\"\n  ports:",
		"  resources: [pods]\n  verbs: [patch]\n", "kind: ValidatingAdmissionPolicy\n", "kind: ValidatingAdmissionPolicyBinding\n",
		`expression: request.userInfo.username == "system:serviceaccount:custom-metrics:promql-wake"`,
		"kind: PrometheusRule", "- alert: PromQLAdapterAPIServiceUnavailable", "runbook_url: https://github.com/promql-adapter/promql-adapter/blob/main/docs/runbook.md#",
		"name: promql-adapter-dashboard", `grafana_dashboard: "1"`, "promql-adapter.json: |-\n    {"} {
		if !strings.Contains(cm, s) {
			t.Errorf("cert-manager + wake values lack %q", s)
		}
	}
	if strings.Contains(cm, "type: Recreate") {
		t.Error("promql-wake's Deployment is recreated: its standbys are Ready now, so it can roll")
	}
	if strings.Contains(cm, "caBundle") {
		t.Error("with cert-manager the chart must leave caBundle to the CA injector")
	}
}

// TestSchemaRejectsWrongValues: a wrong value fails with a message that names it.
func TestSchemaRejectsWrongValues(t *testing.T) {
	for _, tc := range []struct{ set, want string }{
		{"replicas=0", "replicas"},
		{"tls.mode=selfsigned", "tls.mode"},
		{"apis.custom=maybe", "apis.custom"},
		{"prometheus.url=prometheus:9090", "prometheus.url"},
		{"seriesRelistInterval=often", "seriesRelistInterval"},
		{"prometheus.maxInFlight=-1", "prometheus.maxInFlight"},
		{"prometheus.maxQueue=many", "prometheus.maxQueue"},
		{"prometheus.coalesceFreshness=soon", "prometheus.coalesceFreshness"},
		{"replica=3", "replica"},
		{"activator.maxWait=soon", "activator.maxWait"},
		{"prometheusRule.enabled=maybe", "prometheusRule.enabled"},
		{"grafanaDashboard.label.x=y", "grafanaDashboard"},
		{"networkPolicy.apiServerCIDRs={10.0.0.10}", "networkPolicy.apiServerCIDRs"},
		{"hostNetwrok=true", "hostNetwrok"},
		{"hostNetwork=yes", "hostNetwork"},
		{"hostNetwork.enable=true", "hostNetwork"},
		{"wake.podLabel.tier=wake", "podLabel"},
		{"activator.extraVolumeMount[0].name=x", "extraVolumeMount"},
		{"commonLabels.team=1", "commonLabels"},
		{"fullnameOverride=Metrics_Adapter", "fullnameOverride"},
		{"affinity.nodeAfinity.x=y", "nodeAfinity"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			_, err := helm(t, "template", "x", chartDir, "--set", tc.set)
			// Helm names the value as a JSON pointer (/tls/mode) or a dotted path, depending on its version.
			if err == nil || !(strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "/"+strings.ReplaceAll(tc.want, ".", "/"))) {
				t.Errorf("--set %s: error %v, want one naming %s", tc.set, err, tc.want)
			}
		})
	}
}

// TestDeployIsTheRenderedChart: deploy/ holds the chart rendered by `make deploy-render`; this fails
// when the two drift.
func TestDeployIsTheRenderedChart(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("../../hack/helm/render-deploy.sh", helmBin(t), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render-deploy.sh: %v\n%s", err, out)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) < 8 {
		t.Fatalf("rendered %d files: %v", len(files), err)
	}
	// Every YAML file of deploy/ is rendered, but the two written by hand.
	shipped, _ := filepath.Glob("../../deploy/*.yaml")
	for _, f := range shipped {
		name := filepath.Base(f)
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil && name != "namespace.yaml" && name != "kustomization.yaml" {
			t.Errorf("deploy/%s is not rendered from the chart: add it to the chart, or remove it", name)
		}
	}
	for _, f := range files {
		name := filepath.Base(f)
		got, _ := os.ReadFile(f)
		want, err := os.ReadFile(filepath.Join("../../deploy", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("deploy/%s is not the chart's rendering (run make deploy-render): %v\n%s", name, err, diff(string(want), string(got)))
		}
	}
}

// diff shows the first differing lines of two texts.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, a, b)
		}
	}
	return ""
}

// TestMountedSecretsHoldNoCAKey: with generated certificates, the CA's private key is in a Secret that
// no pod mounts (it is read only by `lookup` at upgrade), and every Secret a pod mounts holds no ca.key:
// a compromised adapter pod cannot mint certificates for promql-wake.
func TestMountedSecretsHoldNoCAKey(t *testing.T) {
	for _, v := range ValueSets {
		t.Run(v, func(t *testing.T) {
			var (
				secrets = map[string]map[string]any{} // name -> data
				mounted = map[string]bool{}
			)
			var extra []string
			if v != "certmanager-wake" {
				extra = []string{"--set", "tls.mode=generate"} // the chart's generated certificates
			}
			for _, doc := range strings.Split(Render(t, filepath.Join("../../testdata/chart", v+".yaml"), extra...), "\n---") {
				var obj struct {
					Kind     string                `json:"kind"`
					Metadata struct{ Name string } `json:"metadata"`
					Data     map[string]any        `json:"data"`
					Spec     struct {
						Template struct {
							Spec struct {
								Volumes []struct {
									Secret *struct {
										SecretName string `json:"secretName"`
									} `json:"secret"`
									Projected *struct {
										Sources []struct {
											Secret *struct{ Name string } `json:"secret"`
										} `json:"sources"`
									} `json:"projected"`
								} `json:"volumes"`
							} `json:"spec"`
						} `json:"template"`
					} `json:"spec"`
				}
				if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
					t.Fatalf("%v in:\n%s", err, doc)
				}
				if obj.Kind == "Secret" {
					secrets[obj.Metadata.Name] = obj.Data
				}
				for _, vol := range obj.Spec.Template.Spec.Volumes {
					if vol.Secret != nil {
						mounted[vol.Secret.SecretName] = true
					}
					if vol.Projected != nil {
						for _, s := range vol.Projected.Sources {
							if s.Secret != nil {
								mounted[s.Secret.Name] = true
							}
						}
					}
				}
			}
			if len(mounted) == 0 {
				t.Fatal("no pod mounts a Secret: the test reads the wrong objects")
			}
			keys := 0
			for name, data := range secrets {
				if _, ok := data["ca.key"]; !ok {
					continue
				}
				keys++
				if mounted[name] {
					t.Errorf("Secret %s holds ca.key and is mounted by a pod", name)
				}
			}
			if v != "certmanager-wake" && keys != 1 {
				t.Errorf("%d Secrets hold ca.key; want one (kept for upgrades)", keys)
			}
		})
	}
}
