package chart

import (
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// objects splits a rendering into its objects.
func objects(t *testing.T, rendered string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered object: %v\n%s", err, doc)
		}
		if o != nil {
			out = append(out, o)
		}
	}
	return out
}

func get(o map[string]any, path ...string) any {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func find(objs []map[string]any, kind, name string) []map[string]any {
	var out []map[string]any
	for _, o := range objs {
		if o["kind"] == kind && (name == "" || get(o, "metadata", "name") == name) {
			out = append(out, o)
		}
	}
	return out
}

// selects reports whether matchLabels sel selects a pod with labels.
func selects(sel, labels any) bool {
	s, _ := sel.(map[string]any)
	l, _ := labels.(map[string]any)
	if len(s) == 0 {
		return false // an empty selector would select every pod of the namespace: not a policy for the activator
	}
	for k, v := range s {
		if l[k] != v {
			return false
		}
	}
	return true
}

// TestActivatorNetworkPolicy (review N5): with the activator on, a NetworkPolicy selects its pods: the proxy
// port only from the ingress controller's namespace, the admin port only from monitoring, egress to pods
// and kube-apiserver.
func TestActivatorNetworkPolicy(t *testing.T) {
	objs := objects(t, Render(t, "../../testdata/chart/defaults.yaml", "--set", "activator.enabled=true,networkPolicy.enabled=true"))
	deps := find(objs, "Deployment", "promql-activator")
	if len(deps) != 1 {
		t.Fatalf("%d promql-activator Deployments", len(deps))
	}
	podLabels := get(deps[0], "spec", "template", "metadata", "labels")
	var pol map[string]any
	for _, p := range find(objs, "NetworkPolicy", "") {
		if selects(get(p, "spec", "podSelector", "matchLabels"), podLabels) {
			pol = p
		}
	}
	if pol == nil {
		t.Fatal("no NetworkPolicy selects the promql-activator pods")
	}
	b, _ := yaml.Marshal(pol["spec"])
	spec := string(b)
	for _, want := range []string{
		"- port: 8080\n", "kubernetes.io/metadata.name: ingress-nginx",
		"- port: 9090\n", "kubernetes.io/metadata.name: monitoring",
		"- namespaceSelector: {}", "- Egress", "- Ingress", "cidr: 0.0.0.0/0",
	} {
		if !strings.Contains(spec, want) {
			t.Errorf("activator NetworkPolicy lacks %q:\n%s", want, spec)
		}
	}
	ingress, _ := get(pol, "spec", "ingress").([]any)
	for _, rule := range ingress {
		if get(rule.(map[string]any), "from") == nil {
			t.Errorf("an ingress rule of the activator admits any source: %v", rule)
		}
	}
}

// TestActivatorHostOwnershipAndProxies: the values reach the pod as a mounted ConfigMap and flags.
func TestActivatorHostOwnershipAndProxies(t *testing.T) {
	out := Render(t, "../../testdata/chart/defaults.yaml", "--set", "activator.enabled=true",
		"--set-json", `activator.hostOwnership={"shop":["shop.example.com"]}`, "--set-json", `activator.trustedProxyCIDRs=["10.0.0.0/8","192.168.0.0/16"]`)
	for _, want := range []string{
		"--host-ownership-file=/etc/promql-activator/hosts.yaml", "--trusted-proxy-cidrs=10.0.0.0/8,192.168.0.0/16",
		"name: promql-activator-host-ownership", "hosts.yaml: |\n    shop:\n    - shop.example.com",
		"mountPath: /etc/promql-activator",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q", want)
		}
	}
	def := Render(t, "../../testdata/chart/defaults.yaml", "--set", "activator.enabled=true")
	for _, not := range []string{"--host-ownership-file", "--trusted-proxy-cidrs", "host-ownership"} {
		if strings.Contains(def, not) {
			t.Errorf("defaults hold %q", not)
		}
	}
}

// rulesOf lists "group resource verb" of a Role's or ClusterRole's rules.
func rulesOf(o map[string]any) map[string]bool {
	out := map[string]bool{}
	rules, _ := o["rules"].([]any)
	for _, r := range rules {
		m := r.(map[string]any)
		for _, g := range m["apiGroups"].([]any) {
			for _, res := range m["resources"].([]any) {
				for _, v := range m["verbs"].([]any) {
					out[g.(string)+" "+res.(string)+" "+v.(string)] = true
				}
			}
		}
	}
	return out
}

// TestActivatorRBAC (review N13): the verbs the activator uses and no more; with activator.rbac.namespaces
// the wake rights move from the ClusterRole to a Role per namespace.
func TestActivatorRBAC(t *testing.T) {
	reads := []string{"autoscaling horizontalpodautoscalers list", "autoscaling horizontalpodautoscalers watch",
		" services list", " services watch", "discovery.k8s.io endpointslices list", "discovery.k8s.io endpointslices watch",
		" events create", " events patch"}
	wakes := []string{"apps deployments/scale get", "apps deployments/scale update", "apps statefulsets/scale get",
		"apps statefulsets/scale update", "apps replicasets/scale get", "apps replicasets/scale update",
		"autoscaling horizontalpodautoscalers patch"}
	for _, tc := range []struct {
		name       string
		set        string
		cluster    []string
		roles      []string // namespaces with the wake Role and RoleBinding
		roleGrants []string
	}{
		{"cluster-wide", "activator.enabled=true", append(append([]string{}, reads...), wakes...), nil, nil},
		{"per namespace", "activator.enabled=true,activator.rbac.namespaces={shop,blog}", reads, []string{"shop", "blog"}, wakes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := objects(t, Render(t, "../../testdata/chart/defaults.yaml", "--set", tc.set))
			crs := find(objs, "ClusterRole", "promql-activator")
			if len(crs) != 1 {
				t.Fatalf("%d promql-activator ClusterRoles", len(crs))
			}
			if got := rulesOf(crs[0]); !sameSet(got, tc.cluster) {
				t.Errorf("ClusterRole grants %v, want %v", keys(got), tc.cluster)
			}
			roles := find(objs, "Role", "promql-activator-wake")
			bindings := find(objs, "RoleBinding", "promql-activator-wake")
			if len(roles) != len(tc.roles) || len(bindings) != len(tc.roles) {
				t.Fatalf("%d Roles and %d RoleBindings, want %d each", len(roles), len(bindings), len(tc.roles))
			}
			for i, ns := range tc.roles {
				if get(roles[i], "metadata", "namespace") != ns || get(bindings[i], "metadata", "namespace") != ns {
					t.Errorf("Role %d in %v, binding in %v, want %s", i, get(roles[i], "metadata", "namespace"), get(bindings[i], "metadata", "namespace"), ns)
				}
				if got := rulesOf(roles[i]); !sameSet(got, tc.roleGrants) {
					t.Errorf("Role in %s grants %v, want %v", ns, keys(got), tc.roleGrants)
				}
				subj, _ := bindings[i]["subjects"].([]any)
				if len(subj) != 1 || get(subj[0].(map[string]any), "namespace") != "custom-metrics" || get(subj[0].(map[string]any), "name") != "promql-activator" {
					t.Errorf("RoleBinding in %s binds %v", ns, subj)
				}
			}
		})
	}
}

func sameSet(got map[string]bool, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !got[w] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestLoggingFormatThroughExtraArgs: as the README says, extraArgs, wake.extraArgs and activator.extraArgs
// reach each binary's command line, e.g. --logging-format=json.
func TestLoggingFormatThroughExtraArgs(t *testing.T) {
	out := Render(t, "../../testdata/chart/defaults.yaml", "--set", "wake.enabled=true", "--set", "activator.enabled=true",
		"--set-json", `extraArgs=["--logging-format=json"]`, "--set-json", `wake.extraArgs=["--logging-format=json"]`,
		"--set-json", `activator.extraArgs=["--logging-format=json"]`)
	deployments := find(objects(t, out), "Deployment", "")
	if len(deployments) != 3 {
		t.Fatalf("%d Deployments, want the adapter's, promql-wake's and promql-activator's", len(deployments))
	}
	for _, d := range deployments {
		containers, _ := get(d, "spec", "template", "spec", "containers").([]any)
		if len(containers) == 0 {
			t.Fatalf("%v: no containers", get(d, "metadata", "name"))
		}
		args, _ := containers[0].(map[string]any)["args"].([]any)
		if !slices.Contains(args, any("--logging-format=json")) {
			t.Errorf("%v: args %v lack --logging-format=json", get(d, "metadata", "name"), args)
		}
	}
}
