package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
)

// swapRules writes a new version of the rule file the way the kubelet updates a mounted
// ConfigMap: a new ..<version> directory, then an atomic rename of the ..data symlink.
func swapRules(dir string, content []byte) error {
	version := fmt.Sprintf("..%d", time.Now().UnixNano())
	if err := os.MkdirAll(filepath.Join(dir, version), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, version, "rules.yaml"), content, 0o644); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	link := filepath.Join(dir, "rules.yaml")
	if _, err := os.Lstat(link); os.IsNotExist(err) {
		return os.Symlink(filepath.Join("..data", "rules.yaml"), link)
	}
	return nil
}

// Rule files the reload tests swap in.
const (
	integrationRules = "../../testdata/rules/integration.yaml"
	paRules          = "../../testdata/rules/prometheus-adapter.yaml"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// restoreRulesAtEnd serves the package's own rules again when the test ends.
func restoreRulesAtEnd(t *testing.T) {
	t.Helper()
	orig := readFile(t, integrationRules)
	t.Cleanup(func() {
		if err := swapRules(env.rulesDir, orig); err != nil {
			t.Error(err)
		}
	})
}

// swapIn serves rules now and the package's own rules again when the test ends.
func swapIn(t *testing.T, rules []byte) {
	t.Helper()
	restoreRulesAtEnd(t)
	if err := swapRules(env.rulesDir, rules); err != nil {
		t.Fatal(err)
	}
}

// TestHotReload changes the served rules through ConfigMap-style symlink swaps: a valid change is
// served within 5 s, an invalid one is rejected while the last good rules keep serving.
func TestHotReload(t *testing.T) {
	orig := readFile(t, integrationRules)
	served := func(metric string) bool {
		code, _, err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/" + metric)
		return err == nil && code == 200
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Cleanup(func() {
		waitFor("original rules back", func() bool { return served("elu_utilization") && !served("elu_max") })
	})

	// Requests for a metric that every version serves keep arriving through both swaps; none may fail.
	stopAsking := keepAsking("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization", 4)

	added := string(orig) + "\n- name: elu_max\n  resource: pods\n  query: max by (namespace, pod) (elu_utilization)\n"
	start := time.Now()
	swapIn(t, []byte(added))
	waitFor("a new metric served after a valid change", func() bool { return served("elu_max") })
	t.Logf("valid change served after %s", time.Since(start).Round(10*time.Millisecond))

	broken := added + "- name: broken\n  resource: pods\n  query: sum by (pod) (\n"
	if err := swapRules(env.rulesDir, []byte(broken)); err != nil {
		t.Fatal(err)
	}
	waitFor("the rejection reported at /readyz/rules", func() bool {
		code, body, err := get("/readyz/rules")
		return err == nil && code == 200 && strings.Contains(string(body), "rule 8 (broken): field query")
	})
	if !served("elu_max") || !served("elu_utilization") {
		t.Error("the last good rules stopped serving after an invalid change")
	}
	if code, body, _ := get("/metrics"); code != 200 || !strings.Contains(string(body), "promql_adapter_rules_last_reload_success 0") {
		t.Errorf("/metrics does not show the failed reload")
	}
	if code, _, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz %d: a rejected file must not make the adapter unready", code)
	}
	sent, failures := stopAsking()
	if len(failures) > 0 || sent < 10 {
		t.Errorf("%d requests during the swaps, %d failed: %v", sent, len(failures), failures)
	}
	t.Logf("%d requests during a valid and an invalid swap, none failed", sent)
}

// keepAsking GETs path from workers goroutines, one request after another each, until stop is
// called; stop returns how many requests were sent and what the first few failures were.
func keepAsking(path string, workers int) (stop func() (sent int, failures []string)) {
	var (
		mu   sync.Mutex
		n    int
		fail []string
		quit = make(chan struct{})
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				code, body, err := get(path)
				mu.Lock()
				n++
				if (err != nil || code != 200) && len(fail) < 5 {
					fail = append(fail, fmt.Sprintf("%d %v %.200s", code, err, body))
				}
				mu.Unlock()
			}
		}()
	}
	return func() (int, []string) {
		close(quit)
		wg.Wait()
		return n, fail
	}
}

// TestPrometheusAdapterConfig serves a prometheus-adapter config unchanged (swapped in by hot
// reload): its metric names are listed and its values equal the same PromQL sent to Prometheus.
func TestPrometheusAdapterConfig(t *testing.T) {
	swapIn(t, readFile(t, paRules))
	var list cmv1beta2.MetricValueList
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization_pa")
		if err == nil && code == 200 {
			if err := json.Unmarshal(body, &list); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus-adapter metric not served: %d %s %v", code, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := byLabel(promQuery(t, `avg by (pod) (avg_over_time(elu_utilization{namespace="shop"}[5s]))`), "pod")
	if len(list.Items) != pods {
		t.Fatalf("%d items, want %d", len(list.Items), pods)
	}
	for _, it := range list.Items {
		if it.Value.MilliValue() != milli(want[it.DescribedObject.Name]) {
			t.Errorf("%s: adapter %s, prometheus %v", it.DescribedObject.Name, it.Value.String(), want[it.DescribedObject.Name])
		}
	}
	var ext emv1beta1.ExternalMetricValueList
	getJSON(t, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready?labelSelector="+url.QueryEscape("queue=orders"), 200, &ext)
	if len(ext.Items) != 1 || ext.Items[0].Value.String() != "42" {
		t.Errorf("external: %+v", ext.Items)
	}
	if got := served(t, env.adapter, "custom.metrics.k8s.io/v1beta2"); got != "namespaces/elu_utilization_pa(false) pods/elu_utilization_pa(true)" {
		t.Errorf("listed %s", got)
	}
}
