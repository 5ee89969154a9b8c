package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/forward"
)

// podSpec is the pod template's spec of a workload.
func podSpec(o map[string]any) map[string]any {
	s, _ := get(o, "spec", "template", "spec").(map[string]any)
	return s
}

// named lists the names of a list of objects with a name field (env, volumes, volumeMounts).
func named(list any) []string {
	l, _ := list.([]any)
	var out []string
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m["name"].(string))
		}
	}
	return out
}

func container(o map[string]any) map[string]any {
	cs, _ := podSpec(o)["containers"].([]any)
	if len(cs) != 1 {
		return nil
	}
	return cs[0].(map[string]any)
}

// TestOperatorHooks renders testdata/chart/operator-hooks.yaml: every object carries the common labels and
// annotations and the overridden names, and each workload its own hooks.
func TestOperatorHooks(t *testing.T) {
	objs := objects(t, Render(t, "../../testdata/chart/operator-hooks.yaml"))
	if len(objs) < 25 {
		t.Fatalf("rendered %d objects", len(objs))
	}
	for _, o := range objs {
		id := o["kind"].(string) + "/" + get(o, "metadata", "name").(string)
		if strings.Contains(id, "promql-") {
			t.Errorf("%s: fullnameOverride metrics is not its base name", id)
		}
		if get(o, "metadata", "labels", "team") != "platform" || get(o, "metadata", "labels", "app.kubernetes.io/part-of") != "promql-adapter" {
			t.Errorf("%s: labels %v, want commonLabels' team and the chart's part-of", id, get(o, "metadata", "labels"))
		}
		if get(o, "metadata", "annotations", "owner") != "platform@example.com" {
			t.Errorf("%s: annotations %v lack commonAnnotations", id, get(o, "metadata", "annotations"))
		}
	}
	sa := find(objs, "ServiceAccount", "metrics")
	if len(sa) != 1 || get(sa[0], "metadata", "annotations", "eks.amazonaws.com/role-arn") == nil {
		t.Errorf("the adapter's ServiceAccount lost serviceAccount.annotations beside commonAnnotations: %v", sa)
	}

	for _, tc := range []struct {
		name, priority, tier, note string
		env, volumes, mounts       []string
		hostNetwork                bool
		check                      func(t *testing.T, spec map[string]any)
	}{
		{
			name: "metrics", priority: "system-cluster-critical", tier: "metrics", note: "adapter",
			env: []string{"HTTPS_PROXY"}, volumes: []string{"rules", "tmp", "extra-ca"}, mounts: []string{"rules", "tmp", "extra-ca"}, // tls.mode controller: the certificate is read from its Secret through the API
			hostNetwork: true,
			check: func(t *testing.T, spec map[string]any) {
				// The raw nodeAffinity, and the chart's soft anti-affinity still added.
				if get(spec, "affinity", "nodeAffinity") == nil || get(spec, "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution") == nil {
					t.Errorf("affinity %v: want the raw nodeAffinity and the chart's podAntiAffinity", spec["affinity"])
				}
				if p := get(container(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": spec}}}), "ports"); !strings.Contains(toJSON(p), `"containerPort":7443`) {
					t.Errorf("ports %v: want securePort 7443", p)
				}
				if !reflect.DeepEqual(spec["imagePullSecrets"], []any{map[string]any{"name": "regcred"}}) {
					t.Errorf("imagePullSecrets %v", spec["imagePullSecrets"])
				}
			},
		},
		{
			name: "metrics-wake", priority: "wake-priority", tier: "wake", note: "wake",
			env: []string{"POD_NAME", "GODEBUG"}, volumes: []string{"tls", "token", "wake-extra"}, mounts: []string{"tls", "token", "wake-extra"},
			check: func(t *testing.T, spec map[string]any) {
				// The raw podAntiAffinity replaces the chart's.
				if get(spec, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution") == nil || get(spec, "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution") != nil {
					t.Errorf("affinity %v: want the raw podAntiAffinity alone", spec["affinity"])
				}
				tsc, _ := spec["topologySpreadConstraints"].([]any)
				if len(tsc) != 1 || get(tsc[0].(map[string]any), "labelSelector", "matchLabels", "app.kubernetes.io/name") != "promql-wake" {
					t.Errorf("topologySpreadConstraints %v: want one selecting promql-wake's pods", tsc)
				}
			},
		},
		{
			name: "metrics-activator", priority: "activator-priority", tier: "activator", note: "activator",
			env: []string{"GOMAXPROCS"}, volumes: []string{"host-ownership", "activator-extra"}, mounts: []string{"host-ownership", "activator-extra"},
			check: func(t *testing.T, spec map[string]any) {
				if get(spec, "affinity", "nodeAffinity") == nil || get(spec, "affinity", "podAntiAffinity") == nil {
					t.Errorf("affinity %v: want the raw nodeAffinity and the chart's podAntiAffinity", spec["affinity"])
				}
				// A constraint with its own labelSelector keeps it.
				tsc, _ := spec["topologySpreadConstraints"].([]any)
				if len(tsc) != 1 || get(tsc[0].(map[string]any), "labelSelector", "matchLabels", "track") != "stable" {
					t.Errorf("topologySpreadConstraints %v: want the given labelSelector", tsc)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deps := find(objs, "Deployment", tc.name)
			if len(deps) != 1 {
				t.Fatalf("%d Deployments %s", len(deps), tc.name)
			}
			d := deps[0]
			spec := podSpec(d)
			if spec["priorityClassName"] != tc.priority {
				t.Errorf("priorityClassName %v, want %s", spec["priorityClassName"], tc.priority)
			}
			labels := get(d, "spec", "template", "metadata", "labels")
			if get(d, "spec", "template", "metadata", "labels", "tier") != tc.tier || get(d, "spec", "template", "metadata", "labels", "team") != "platform" {
				t.Errorf("pod labels %v: want podLabels' tier %s and commonLabels' team", labels, tc.tier)
			}
			if n := get(d, "spec", "template", "metadata", "annotations", "example.com/note"); n != tc.note {
				t.Errorf("pod annotation example.com/note %v, want %s", n, tc.note)
			}
			if hn, _ := spec["hostNetwork"].(bool); hn != tc.hostNetwork || (hn && spec["dnsPolicy"] != "ClusterFirstWithHostNet") || (!hn && spec["dnsPolicy"] != nil) {
				t.Errorf("hostNetwork %v dnsPolicy %v, want hostNetwork %v (with ClusterFirstWithHostNet)", spec["hostNetwork"], spec["dnsPolicy"], tc.hostNetwork)
			}
			c := container(d)
			if got := named(c["env"]); !slices.Equal(got, tc.env) {
				t.Errorf("env %v, want %v", got, tc.env)
			}
			if got := named(spec["volumes"]); !slices.Equal(got, tc.volumes) {
				t.Errorf("volumes %v, want %v", got, tc.volumes)
			}
			if got := named(c["volumeMounts"]); !slices.Equal(got, tc.mounts) {
				t.Errorf("volumeMounts %v, want %v", got, tc.mounts)
			}
			tc.check(t, spec)
		})
	}
}

// TestHostNetworkForms: hostNetwork is a boolean, or prometheus-adapter's chart's {enabled: bool}.
func TestHostNetworkForms(t *testing.T) {
	for _, tc := range []struct {
		values string
		want   bool
	}{
		{"hostNetwork: true\n", true},
		{"hostNetwork: {enabled: true}\n", true},
		{"hostNetwork: {enabled: false}\n", false},
		{"hostNetwork: false\n", false},
	} {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
			t.Fatal(err)
		}
		spec := podSpec(find(objects(t, Render(t, f)), "Deployment", "promql-adapter")[0])
		if hn, _ := spec["hostNetwork"].(bool); hn != tc.want || (hn && spec["dnsPolicy"] != "ClusterFirstWithHostNet") {
			t.Errorf("%s: hostNetwork %v dnsPolicy %v, want %v", strings.TrimSpace(tc.values), spec["hostNetwork"], spec["dnsPolicy"], tc.want)
		}
	}
}

// TestForwardValues renders testdata/chart/beside-keda.yaml: the --forward-* flags the adapter gets parse as its
// own flag parser reads them, every file they name is in a mounted Secret (or an extra volume), the forwarder's
// RBAC lets the upstreams authorize the adapter, and its NetworkPolicy lets it reach KEDA.
func TestForwardValues(t *testing.T) {
	objs := objects(t, Render(t, "../../testdata/chart/beside-keda.yaml"))
	deps := find(objs, "Deployment", "promql-adapter")
	if len(deps) != 1 {
		t.Fatalf("%d adapter Deployments", len(deps))
	}
	c := container(deps[0])
	var args []string
	for _, a := range c["args"].([]any) {
		if strings.HasPrefix(a.(string), "--forward-") {
			args = append(args, a.(string))
		}
	}
	want := []string{
		"--forward-external=https://keda-operator-metrics-apiserver.keda.svc:443,name=keda,ca-file=/etc/promql-adapter/forward/external-0/ca/ca.crt,catch-all",
		"--forward-custom=https://prometheus-adapter.monitoring.svc:443,name=prometheus-adapter,ca-file=/etc/prometheus-adapter-ca/ca.crt,auth=token,token-file=/etc/promql-adapter/forward/custom-0/token/token,identity=impersonate",
		"--forward-timeout=3s",
		"--forward-refresh-interval=10s",
	}
	if !slices.Equal(args, want) {
		t.Fatalf("forward flags:\n%s\nwant:\n%s", strings.Join(args, "\n"), strings.Join(want, "\n"))
	}
	// Where each mounted volume is, and what it holds.
	mounts := map[string]string{} // mount path -> volume
	for _, m := range c["volumeMounts"].([]any) {
		mm := m.(map[string]any)
		mounts[mm["mountPath"].(string)] = mm["name"].(string)
	}
	volumes := map[string]map[string]any{}
	for _, v := range podSpec(deps[0])["volumes"].([]any) {
		vv := v.(map[string]any)
		volumes[vv["name"].(string)] = vv
	}
	for _, tc := range []struct {
		api, arg, file, source string
	}{
		{forward.External, args[0], "/etc/promql-adapter/forward/external-0/ca/ca.crt", "secret:kedaorg-certs"},
		{forward.Custom, args[1], "/etc/promql-adapter/forward/custom-0/token/token", "secret:prometheus-adapter-token"},
		{forward.Custom, args[1], "/etc/prometheus-adapter-ca/ca.crt", "configMap:prometheus-adapter-ca"},
	} {
		spec, err := forward.ParseSpec(tc.api, strings.SplitN(tc.arg, "=", 2)[1])
		if err != nil {
			t.Errorf("the adapter refuses %s: %v", tc.arg, err)
		}
		if spec.CAFile != tc.file && spec.TokenFile != tc.file {
			t.Errorf("%s names neither ca-file nor token-file %s", tc.arg, tc.file)
		}
		vol := volumes[mounts[filepath.Dir(tc.file)]]
		got := ""
		if s, ok := vol["secret"].(map[string]any); ok {
			got = "secret:" + s["secretName"].(string)
		} else if cm, ok := vol["configMap"].(map[string]any); ok {
			got = "configMap:" + cm["name"].(string)
		}
		if got != tc.source {
			t.Errorf("%s is in volume %v, want %s", tc.file, vol, tc.source)
		}
	}

	roles := find(objs, "ClusterRole", "promql-adapter-forwarder")
	if len(roles) != 1 {
		t.Fatal("no ClusterRole promql-adapter-forwarder")
	}
	if got, want := rulesOf(roles[0]), []string{
		"external.metrics.k8s.io * get", "external.metrics.k8s.io * list", "custom.metrics.k8s.io * get", "custom.metrics.k8s.io * list",
		" users impersonate", " groups impersonate", " serviceaccounts impersonate", "authentication.k8s.io * impersonate",
	}; !sameSet(got, want) {
		t.Errorf("forwarder rules %v, want %v", keys(got), want)
	}
	bindings := find(objs, "ClusterRoleBinding", "promql-adapter-forwarder")
	if len(bindings) != 1 || toJSON(bindings[0]["subjects"]) != `[{"kind":"ServiceAccount","name":"promql-adapter","namespace":"custom-metrics"}]` {
		t.Errorf("forwarder binding %v, want the adapter's ServiceAccount", bindings)
	}
	pol := find(objs, "NetworkPolicy", "promql-adapter")
	if len(pol) != 1 || !strings.Contains(toJSON(get(pol[0], "spec", "egress")), `{"ports":[{"port":6443,"protocol":"TCP"}],"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"keda"}}}]}`) {
		t.Errorf("the adapter's NetworkPolicy lets it not reach KEDA's metrics server: %v", pol)
	}

	// Without upstreams: no forwarding flag, no forwarder role.
	def := Render(t, "../../testdata/chart/defaults.yaml")
	if strings.Contains(def, "--forward-") || strings.Contains(def, "forwarder") {
		t.Error("the defaults forward")
	}
	// Only external forwarded, by the adapter's identity: no custom rule, no impersonation.
	ext := objects(t, Render(t, "../../testdata/chart/beside-keda.yaml", "--set", "forward.custom=null"))
	if got := rulesOf(find(ext, "ClusterRole", "promql-adapter-forwarder")[0]); !sameSet(got, []string{"external.metrics.k8s.io * get", "external.metrics.k8s.io * list"}) {
		t.Errorf("external-only forwarder rules %v", keys(got))
	}
}

// TestForwardValuesRefused: forwarding values the adapter would refuse at start fail the render, naming the value.
// Each case is a values file of its own (--set of a list's item would replace the whole list).
func TestForwardValuesRefused(t *testing.T) {
	const keda = "url: https://keda-operator-metrics-apiserver.keda.svc:443"
	for _, tc := range []struct{ name, values, want string }{
		{"external without apis.external", "apis: {external: false}\nforward:\n  external:\n  - {" + keda + "}\n", "forward.external needs apis.external"},
		{"custom without apis.custom", "apis: {custom: false}\nforward:\n  custom:\n  - {" + keda + "}\n", "forward.custom needs apis.custom"},
		{"two CAs", "forward:\n  external:\n  - {" + keda + ", caSecret: {name: kedaorg-certs}, caFile: /etc/keda/ca.crt}\n", "forward.external[0]: give one of caSecret, caFile and clusterCA"},
		{"token and cert", "forward:\n  custom:\n  - {" + keda + "}\n  - {" + keda + ", tokenSecret: {name: t}, certSecret: {name: c}}\n", "forward.custom[1]: give tokenSecret or certSecret, not both"},
		{"typo in an upstream", "forward:\n  external:\n  - {" + keda + ", caSecrets: {name: kedaorg-certs}}\n", "caSecrets"},
		{"URL without scheme", "forward:\n  external:\n  - {url: keda:443}\n", "url"},
		{"no URL", "forward:\n  external:\n  - {name: keda}\n", "url"},
		{"identity", "forward:\n  external:\n  - {" + keda + ", identity: theirs}\n", "identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := helm(t, "template", "promql-adapter", chartDir, "-f", f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one naming %q", tc.values, err, tc.want)
			}
		})
	}
}

// TestSchemaNamesTyposOfAValuesFile: a values file with misspelt keys fails, naming each of them.
func TestSchemaNamesTyposOfAValuesFile(t *testing.T) {
	_, err := helm(t, "template", "x", chartDir, "-f", "../../testdata/chart/invalid/typo.yaml")
	if err == nil {
		t.Fatal("a values file with typos renders")
	}
	for _, k := range []string{"podAnotations", "extraVolume"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("the error does not name %s:\n%v", k, err)
		}
	}
}

// TestSchemaAcceptsGlobal: Helm's global values, which a parent chart passes to its subcharts, are accepted.
func TestSchemaAcceptsGlobal(t *testing.T) {
	out := Render(t, "../../testdata/chart/global.yaml")
	if !strings.Contains(out, "kind: Deployment") {
		t.Errorf("global: {foo: 1} rendered no Deployment:\n%s", out)
	}
}

// TestSubchart renders testdata/chart/parent, an umbrella chart with this chart in its charts/: global values
// pass the schema, the subchart's values are its own, and a typo under its key is named.
func TestSubchart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "parent")
	if err := os.CopyFS(dir, os.DirFS("../../testdata/chart/parent")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "charts", "promql-adapter"), os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t, "template", "platform", dir, "--namespace", "platform")
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, out)
	if len(find(objs, "Deployment", "metrics")) != 1 || len(find(objs, "APIService", "v1beta2.custom.metrics.k8s.io")) != 1 {
		t.Errorf("the subchart rendered no Deployment metrics or APIService:\n%s", out)
	}
	if _, err := helm(t, "lint", "--strict", dir); err != nil {
		t.Errorf("lint of the parent: %v", err)
	}
	_, err = helm(t, "template", "platform", dir, "--set", "promql-adapter.replica=3")
	if err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("a typo under the subchart's key: error %v, want one naming replica", err)
	}
}

// TestNotes: what `helm install` prints after an install names what was installed and how to check it.
func TestNotes(t *testing.T) {
	out, err := helm(t, "install", "promql-adapter", chartDir, "--dry-run=client", "--namespace", "custom-metrics",
		"-f", "../../testdata/chart/beside-keda.yaml", "--set", "wake.enabled=true,activator.enabled=true,apis.resource=true")
	if err != nil {
		t.Fatal(err)
	}
	_, notes, ok := strings.Cut(out, "\nNOTES:\n")
	if !ok {
		t.Fatalf("no NOTES in:\n%s", out)
	}
	for _, s := range []string{
		"installed as release promql-adapter in namespace custom-metrics",
		"Deployment custom-metrics/promql-adapter (2 replicas), querying http://prometheus.monitoring.svc:9090",
		"kubectl get apiservice v1beta2.custom.metrics.k8s.io v1beta1.custom.metrics.k8s.io v1beta1.external.metrics.k8s.io v1.metrics.k8s.io v1beta1.metrics.k8s.io",
		"forwarding the external metrics it does not serve to keda (https://keda-operator-metrics-apiserver.keda.svc:443)",
		"forwarding the custom metrics it does not serve to prometheus-adapter",
		"promql-wake: Deployment custom-metrics/promql-wake",
		"promql-activator: Service custom-metrics/promql-activator",
		"kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2",
		"kubectl get --raw /apis/external.metrics.k8s.io/v1beta1",
		"kubectl top pods",
		"kubectl -n custom-metrics exec deploy/promql-adapter -- /promql-adapter check --config /etc/promql-adapter/rules/rules.yaml --prometheus-url http://prometheus.monitoring.svc:9090",
		"charts/promql-adapter/README.md",
	} {
		if !strings.Contains(notes, s) {
			t.Errorf("NOTES lack %q:\n%s", s, notes)
		}
	}
}

// toJSON is v as compact JSON, for comparing rendered structures.
func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
