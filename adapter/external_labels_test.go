package adapter

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// TestExternalLabelsPrometheusAdapter: an external metric of a prometheus-adapter rule carries
// every label of the answer's series in metricLabels, __name__ included when the query keeps it,
// as prometheus-adapter answers; a native rule's answer leaves __name__ out.
func TestExternalLabelsPrometheusAdapter(t *testing.T) {
	s := &seriesAndQueries{series: map[string][]string{"queue_depth": {"namespace", "queue"}},
		answer: func(string) ([]sample, int, string, string) {
			return []sample{{map[string]string{"__name__": "queue_depth", "namespace": "shop", "queue": "orders"}, 7}}, 0, "", ""
		}}
	url := s.start(t)
	p := paProvider(t, `
externalRules:
- seriesQuery: 'queue_depth{namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: '<<.Series>>{<<.LabelMatchers>>}'
`, url, nil, 0)
	list, err := p.GetExternalMetric(context.Background(), "shop", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_depth"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"__name__": "queue_depth", "namespace": "shop", "queue": "orders"}
	if len(list.Items) != 1 || len(list.Items[0].MetricLabels) != len(want) {
		t.Fatalf("items %+v, want one with labels %v", list.Items, want)
	}
	for k, v := range want {
		if list.Items[0].MetricLabels[k] != v {
			t.Errorf("metricLabels %v, want %v", list.Items[0].MetricLabels, want)
		}
	}

	f := newFakeProm(t, func(string) ([]sample, error) {
		return []sample{{map[string]string{"__name__": "queue_messages_ready", "queue": "orders"}, 42}}, nil
	})
	native, _ := newTestProvider(t, f, nil, 5e9)
	list, err = native.GetExternalMetric(context.Background(), "shop", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_messages_ready"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || len(list.Items[0].MetricLabels) != 1 || list.Items[0].MetricLabels["queue"] != "orders" {
		t.Errorf("native rule: items %+v, want metricLabels {queue: orders}", list.Items)
	}
}
