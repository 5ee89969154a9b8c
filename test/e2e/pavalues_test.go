//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/inspect/pavalues"
)

// chartAdapter converts a prometheus-adapter chart values file of inspect/pavalues/testdata, renders
// charts/promql-adapter with the result (and the stack's Prometheus as prometheus.url), and runs the
// adapter as the chart's Deployment would: its arguments, its ConfigMap as the rule file, the cluster's
// serving certificate as its Secret (tls.mode secret, no APIService controller: the stack's APIServices stay
// with the stack's adapter). It returns a client of the adapter's secure port (the admin's
// credentials, which the adapter delegates to kube-apiserver) and its base URL.
func chartAdapter(t *testing.T, name string) (*http.Client, string) {
	t.Helper()
	ctx := context.Background()
	in, err := os.ReadFile(filepath.Join(root, "inspect/pavalues/testdata", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := pavalues.Convert(in, pavalues.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	values := filepath.Join(dir, "values.yaml")
	local := filepath.Join(dir, "local.yaml")
	if err := os.WriteFile(values, res.Values, 0o644); err != nil {
		t.Fatal(err)
	}
	// The stack's kube-apiserver already routes the metrics APIs to the stack's adapter: this one serves the
	// certificate from files (tls.mode secret) and runs no APIService controller, which would claim the
	// stack's APIServices for a Service of its own and leave them pointing at it when it stops.
	localValues := "prometheus: {url: '" + st.Prom.URL() + "'}\ntls: {mode: secret}\napiService: {controller: false}\n"
	if err := os.WriteFile(local, []byte(localValues), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(helmBin(t), "template", "promql-adapter", filepath.Join(root, "charts/promql-adapter"),
		"--namespace", "custom-metrics", "-f", values, "-f", local).Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var rules string
	var args []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var o struct {
			Kind     string
			Metadata struct{ Name string }
			Data     map[string]string
			Spec     struct {
				Template struct {
					Spec struct{ Containers []struct{ Args []string } }
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		switch {
		case o.Kind == "ConfigMap" && o.Metadata.Name == "promql-adapter-rules":
			rules = o.Data["rules.yaml"]
		case o.Kind == "Deployment" && o.Metadata.Name == "promql-adapter":
			args = o.Spec.Template.Spec.Containers[0].Args
		}
	}
	if rules == "" || args == nil {
		t.Fatalf("no rules ConfigMap or Deployment in the rendering")
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--apiservice") || strings.HasPrefix(a, "--tls-secret") {
			t.Fatalf("the rendering runs the APIService controller (%s), which would take the stack's APIServices", a)
		}
	}
	mounts := filepath.Join(dir, "mounts")
	for f, data := range map[string][]byte{"rules/rules.yaml": []byte(rules)} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mounts, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mounts, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(mounts, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{st.Cluster.AdapterServingCertFile(): "tls/tls.crt", st.Cluster.AdapterServingKeyFile(): "tls/tls.key"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mounts, dst), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := st.ServiceAccountKubeconfig(ctx, "custom-metrics", "promql-adapter")
	if err != nil {
		t.Fatal(err)
	}
	var run []string
	for _, a := range args {
		if strings.HasPrefix(a, "--secure-port=") {
			a = "--secure-port=" + strconv.Itoa(port)
		}
		run = append(run, strings.ReplaceAll(a, "/etc/promql-adapter/", mounts+"/"))
	}
	run = append(run, "--bind-address=127.0.0.1", "--lister-kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc)
	t.Logf("%s: the chart's adapter arguments: %q", name, run)
	startAdapterProc(t, filepath.Join(st.WorkDir(), "promql-adapter"), run, filepath.Join(dir, "adapter.log"), 10*time.Second, 4096)
	cfg := st.Cluster.AdminConfig()
	cfg.Host = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.Insecure = nil, "", true // the serving certificate names the Service, not 127.0.0.1
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, name+": the adapter ready", func() (bool, string) {
		resp, err := client.Get(cfg.Host + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return client, cfg.Host
}

// getJSON GETs a path of the adapter into v; it returns the status and body on failure.
func getJSON(client *http.Client, url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", resp.Status, b.String())
	}
	return json.Unmarshal(b.Bytes(), v)
}

// listed is the sorted resource/metric names of a metrics API group version.
func listed(client *http.Client, url string) ([]string, error) {
	var list struct{ Resources []struct{ Name string } }
	if err := getJSON(client, url, &list); err != nil {
		return nil, err
	}
	var names []string
	for _, r := range list.Resources {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names, nil
}

// paDefaultName is the metric name prometheus-adapter's default rules (rules.default: true) serve for a
// series name with a namespace label, as its chart's config.yaml defines them.
func paDefaultName(series string) string {
	rest, container := strings.CutPrefix(series, "container_")
	switch {
	case container && strings.HasSuffix(rest, "_seconds_total"):
		return strings.TrimSuffix(rest, "_seconds_total")
	case container:
		return strings.TrimSuffix(rest, "_total")
	case strings.HasSuffix(series, "_seconds_total"):
		return strings.TrimSuffix(series, "_seconds_total")
	case strings.HasSuffix(series, "_total") && strings.Contains(series, "_seconds_total"):
		return "" // excluded by the rule for other counters; not matched by the _seconds_total one
	}
	return strings.TrimSuffix(series, "_total")
}

// TestE2EPrometheusAdapterValues: prometheus-adapter chart values files (its defaults; custom rules only;
// resource rules for kubectl top; external rules) → convert --helm-values → our chart → the adapter as
// the chart runs it, against the stack's Prometheus: it serves the metric names prometheus-adapter
// serves for those rules, and external metrics carry the labels prometheus-adapter's answers carry.
func TestE2EPrometheusAdapterValues(t *testing.T) {
	if err := st.Sim.SetLoad(ns, "web", 40); err != nil {
		t.Fatal(err)
	}
	if err := st.Sim.SetQueue(ns, "worker", 5); err != nil {
		t.Fatal(err)
	}
	// Discovery lists series once at start (then every relist interval): wait until Prometheus holds
	// every series the rules read, with two samples for the rates.
	need := []string{"http_requests_total", "elu_utilization", "service_requests_in_flight", "queue_messages_ready",
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "node_cpu_usage_seconds_total", "node_memory_working_set_bytes"}
	eventually(t, 90*time.Second, "the simulator's series in Prometheus", func() (bool, string) {
		var missing []string
		for _, m := range need {
			var r struct{ Data struct{ Result []any } }
			resp, err := http.Get(st.Prom.URL() + "/api/v1/query?" + url.Values{"query": {"count_over_time(" + m + "[1m]) >= 2"}}.Encode())
			if err != nil {
				return false, err.Error()
			}
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err != nil || len(r.Data.Result) == 0 {
				missing = append(missing, m)
			}
		}
		return len(missing) == 0, "missing " + strings.Join(missing, ", ")
	})
	t.Run("pa-defaults", func(t *testing.T) {
		client, host := chartAdapter(t, "pa-defaults")
		// Every series name with a namespace label Prometheus holds: each listed metric must be the
		// name prometheus-adapter's default rules give one of them.
		var series struct{ Data []string }
		resp, err := http.Get(st.Prom.URL() + "/api/v1/label/__name__/values?" + url.Values{"match[]": {`{namespace!=""}`}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&series)
		resp.Body.Close()
		if err != nil || len(series.Data) == 0 {
			t.Fatalf("series names from Prometheus: %v %v", series.Data, err)
		}
		derived := map[string]bool{}
		for _, s := range series.Data {
			if n := paDefaultName(s); n != "" {
				derived[n] = true
			}
		}
		want := []string{"pods/cpu_usage", "namespaces/cpu_usage", "pods/memory_working_set_bytes", "namespaces/memory_working_set_bytes",
			"pods/http_requests", "services/http_requests", "namespaces/http_requests", "pods/elu_utilization", "namespaces/elu_utilization",
			"services/service_requests_in_flight", "namespaces/queue_messages_ready"}
		var names []string
		eventually(t, 60*time.Second, "prometheus-adapter's default metric names listed", func() (bool, string) {
			names, err = listed(client, host+"/apis/custom.metrics.k8s.io/v1beta2")
			if err != nil {
				return false, err.Error()
			}
			for _, w := range want {
				if !slices.Contains(names, w) {
					return false, "missing " + w + " in " + strings.Join(names, ",")
				}
			}
			return true, ""
		})
		for _, n := range names {
			metric := n[strings.Index(n, "/")+1:]
			if !derived[metric] || strings.HasSuffix(metric, "_total") || strings.HasPrefix(metric, "container_") {
				t.Errorf("%s is listed: no series gives that name under prometheus-adapter's default rules", n)
			}
		}
		t.Logf("pa-defaults: %d metrics listed from %d namespaced series names: %s", len(names), len(series.Data), strings.Join(names, ","))
		// Values: the web pod's request rate (40 req/s) and its container CPU.
		eventually(t, 60*time.Second, "pods/*/http_requests of web", func() (bool, string) {
			var v struct{ Items []struct{ Value string } }
			err := getJSON(client, host+"/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/http_requests?labelSelector=app%3Dweb", &v)
			return err == nil && len(v.Items) == 1, fmt.Sprint(v, err)
		})
	})
	t.Run("custom-rules", func(t *testing.T) {
		client, host := chartAdapter(t, "custom-rules")
		// http_requests_total{namespace,pod,service} by its three overrides; elu_utilization{namespace,pod}
		// (job and instance added by the scrape) by every label naming a resource: namespace, pod, and
		// job (jobs.batch), as prometheus-adapter's <<.Resource>> template maps them.
		want := []string{"jobs.batch/eventloop_utilization", "namespaces/eventloop_utilization", "namespaces/http_requests_per_second",
			"pods/eventloop_utilization", "pods/http_requests_per_second", "services/http_requests_per_second"}
		eventually(t, 60*time.Second, "the custom rules' metric names", func() (bool, string) {
			names, err := listed(client, host+"/apis/custom.metrics.k8s.io/v1beta2")
			return err == nil && slices.Equal(names, want), fmt.Sprint(names, err)
		})
		eventually(t, 120*time.Second, "services/web/http_requests_per_second ≈ 40 (a 1m rate)", func() (bool, string) {
			var v struct{ Items []struct{ Value string } }
			err := getJSON(client, host+"/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/services/web/http_requests_per_second", &v)
			if err != nil || len(v.Items) != 1 {
				return false, fmt.Sprint(v, err)
			}
			f := quantity(v.Items[0].Value)
			return f > 38 && f < 42, v.Items[0].Value
		})
	})
	t.Run("resource-rules", func(t *testing.T) {
		client, host := chartAdapter(t, "resource-rules")
		eventually(t, 60*time.Second, "kubectl top's PodMetrics and NodeMetrics", func() (bool, string) {
			var pods, nodes struct {
				Items []struct {
					Metadata   struct{ Name string }
					Containers []struct{ Usage map[string]string }
					Usage      map[string]string
				}
			}
			if err := getJSON(client, host+"/apis/metrics.k8s.io/v1beta1/namespaces/demo/pods", &pods); err != nil {
				return false, err.Error()
			}
			if err := getJSON(client, host+"/apis/metrics.k8s.io/v1beta1/nodes", &nodes); err != nil {
				return false, err.Error()
			}
			web := false
			for _, p := range pods.Items {
				if strings.HasPrefix(p.Metadata.Name, "web-") && len(p.Containers) > 0 && p.Containers[0].Usage["cpu"] != "" && p.Containers[0].Usage["memory"] != "" {
					web = true
				}
			}
			return web && len(nodes.Items) > 0 && nodes.Items[0].Usage["memory"] != "", fmt.Sprintf("pods %+v nodes %+v", pods.Items, nodes.Items)
		})
		// Only metrics.k8s.io, as prometheus-adapter's chart registers for these values.
		if names, err := listed(client, host+"/apis/custom.metrics.k8s.io/v1beta2"); err == nil {
			t.Errorf("custom.metrics.k8s.io served with --apis=resource: %v", names)
		}
	})
	t.Run("external-rules", func(t *testing.T) {
		client, host := chartAdapter(t, "external-rules")
		eventually(t, 60*time.Second, "the external rules' metric names", func() (bool, string) {
			names, err := listed(client, host+"/apis/external.metrics.k8s.io/v1beta1")
			return err == nil && slices.Equal(names, []string{"queue_messages_ready", "service_requests_in_flight_raw"}), fmt.Sprint(names, err)
		})
		type item struct{ MetricLabels map[string]string }
		var v struct{ Items []item }
		// A raw selector keeps the series' labels, __name__ among them: prometheus-adapter passes them all.
		eventually(t, 30*time.Second, "service_requests_in_flight_raw of web", func() (bool, string) {
			v.Items = nil
			err := getJSON(client, host+"/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/service_requests_in_flight_raw?labelSelector=service%3Dweb", &v)
			return err == nil && len(v.Items) == 1, fmt.Sprint(v, err)
		})
		l := v.Items[0].MetricLabels
		if l["__name__"] != "service_requests_in_flight" || l["namespace"] != "demo" || l["service"] != "web" || l["job"] == "" || l["instance"] == "" {
			t.Errorf("metricLabels %v: want every label of the series, __name__ included, as prometheus-adapter answers", l)
		}
		// sum by (queue) drops __name__ in Prometheus itself: only queue is left, as for prometheus-adapter.
		eventually(t, 30*time.Second, "queue_messages_ready of worker", func() (bool, string) {
			v.Items = nil
			err := getJSON(client, host+"/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_messages_ready?labelSelector=queue%3Dworker", &v)
			return err == nil && len(v.Items) == 1, fmt.Sprint(v, err)
		})
		if l := v.Items[0].MetricLabels; len(l) != 1 || l["queue"] != "worker" {
			t.Errorf("metricLabels %v, want {queue: worker}", l)
		}
	})
}

// quantity reads a Kubernetes quantity of the forms the adapter writes (12, 12500m, 1.5k).
func quantity(s string) float64 {
	m := regexp.MustCompile(`^([0-9.]+)(m|k)?$`).FindStringSubmatch(s)
	if m == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "m":
		f /= 1000
	case "k":
		f *= 1000
	}
	return f
}
