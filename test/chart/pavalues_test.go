package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/inspect/pavalues"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// TestPrometheusAdapterValues: each prometheus-adapter chart values file of inspect/pavalues/testdata,
// converted (the result is its golden file there), passes `helm lint --strict` and renders; the
// rendered ConfigMap is a rule file the adapter loads in prometheus-adapter's format, the adapter is
// told that format, the APIs registered are those prometheus-adapter's chart registers for the same
// rules, and the Prometheus URL is PA's url:port/path.
func TestPrometheusAdapterValues(t *testing.T) {
	cases := []struct {
		name, apisFlag, url string
		apiServices         []string
	}{
		{"pa-defaults", "--apis=custom", "http://prometheus.default.svc:9090", []string{"v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io"}},
		{"custom-rules", "--apis=custom", "http://kube-prometheus-stack-prometheus.monitoring.svc:9090", []string{"v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io"}},
		{"resource-rules", "--apis=resource", "http://prometheus-operated.monitoring.svc:9090/prometheus", []string{"v1.metrics.k8s.io", "v1beta1.metrics.k8s.io"}},
		{"external-rules", "--apis=external", "http://prometheus.monitoring.svc:9090", []string{"v1beta1.external.metrics.k8s.io"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("../../inspect/pavalues/testdata", tc.name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := pavalues.Convert(in, pavalues.Options{})
			if err != nil {
				t.Fatal(err)
			}
			golden, err := os.ReadFile(filepath.Join("../../inspect/pavalues/testdata/golden", tc.name+".values.yaml"))
			if err != nil || string(golden) != string(res.Values) {
				t.Fatalf("the conversion differs from its golden file (go test ./inspect/pavalues -update): %v", err)
			}
			values := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(values, res.Values, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := helm(t, "lint", "--strict", chartDir, "-f", values); err != nil || !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("lint: %v %s", err, out)
			}
			objs := objects(t, Render(t, values))
			cms := find(objs, "ConfigMap", "promql-adapter-rules")
			if len(cms) != 1 {
				t.Fatal("no rules ConfigMap")
			}
			file := fmt.Sprint(get(cms[0], "data", "rules.yaml"))
			if _, _, err := pacompat.Load([]byte(file), naming.BuiltinResources()); err != nil {
				t.Errorf("the rendered rule file does not load: %v\n%s", err, file)
			}
			deps := find(objs, "Deployment", "promql-adapter")
			if len(deps) != 1 {
				t.Fatal("no Deployment")
			}
			args := fmt.Sprint(get(deps[0], "spec", "template", "spec", "containers").([]any)[0].(map[string]any)["args"])
			for _, want := range []string{"--config-format=prometheus-adapter", tc.apisFlag, "--prometheus-url=" + tc.url + " "} {
				if !strings.Contains(args+" ", want) {
					t.Errorf("args lack %q: %s", want, args)
				}
			}
			var got []string
			for _, o := range find(objs, "APIService", "") {
				got = append(got, fmt.Sprint(get(o, "metadata", "name")))
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.apiServices))
			if !slices.Equal(got, want) {
				t.Errorf("APIServices %v, want %v", got, want)
			}
		})
	}
}
