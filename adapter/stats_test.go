package adapter

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/labels"
)

// TestDecodeStats: Prometheus's own query stats (stats=all) are read when they have its shape,
// and any other shape (VictoriaMetrics' strings, none at all, odd types) is skipped, never an error.
func TestDecodeStats(t *testing.T) {
	const result = `"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1700000000.5,"1"]}]`
	for _, tc := range []struct {
		name   string
		stats  string
		before bool // stats ahead of the result
		want   QueryStats
	}{
		{name: "prometheus", stats: `"stats":{"timings":{"evalTotalTime":0.000125,"resultSortTime":0,"queryPreparationTime":1e-05,"innerEvalTime":9e-05,"execQueueTime":2e-06,"execTotalTime":0.0002},"samples":{"totalQueryableSamples":360,"peakSamples":12}}`,
			want: QueryStats{EvalSeconds: 0.000125, Samples: 360}},
		{name: "ahead of the result", before: true, stats: `"stats":{"samples":{"totalQueryableSamples":7}}`, want: QueryStats{Samples: 7}},
		{name: "none"},
		{name: "victoriametrics", stats: `"stats":{"seriesFetched":"12","executionTimeMsec":3}`},
		{name: "odd types", stats: `"stats":{"timings":[1,2],"samples":{"totalQueryableSamples":"9"}}`},
		{name: "null", stats: `"stats":null`},
		{name: "timings only", stats: `"stats":{"timings":{"evalTotalTime":2.5}}`, want: QueryStats{EvalSeconds: 2.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := result
			switch {
			case tc.stats != "" && tc.before:
				data = tc.stats + "," + result
			case tc.stats != "":
				data = result + "," + tc.stats
			}
			r, err := decodeQuery(strings.NewReader(`{"status":"success","data":{`+data+`}}`), "pod", false)
			if err != nil {
				t.Fatal(err)
			}
			if r.Stats != tc.want {
				t.Errorf("stats %+v, want %+v", r.Stats, tc.want)
			}
			if len(r.Samples) != 1 || r.Samples[0].Object != "a" || r.Samples[0].Value != 1 {
				t.Errorf("samples %+v", r.Samples)
			}
		})
	}
}

// TestRuleQueryCost: each query a rule sends is counted under the rule's position and backend,
// with the time it took and Prometheus's own evaluation time and samples; the client asks for
// them with stats=all.
func TestRuleQueryCost(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		asked = append(asked, r.Form.Get("stats"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{
			"resultType": "vector",
			"result":     []any{map[string]any{"metric": map[string]string{"pod": "web-1", "queue": "q"}, "value": []any{1700000000.5, "0.5"}}},
			"stats":      map[string]any{"timings": map[string]any{"evalTotalTime": 0.25}, "samples": map[string]any{"totalQueryableSamples": 40}},
		}})
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	q, err := NewPromClient(PrometheusConfig{URL: srv.URL}, m)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProvider(Options{Querier: q, Metrics: m}, testRules(t))
	for range 2 {
		if _, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(), podsInfo, labels.Everything()); err != nil {
			t.Fatal(err)
		}
	}
	elu, err := p.find(podsInfo)
	if err != nil {
		t.Fatal(err)
	}
	idx := strconv.Itoa(elu.RuleIndex)
	if got := testutil.ToFloat64(m.ruleQueries.WithLabelValues(idx, "default")); got != 2 {
		t.Errorf("rule %s queries %v, want 2", idx, got)
	}
	if got := testutil.ToFloat64(m.ruleEval.WithLabelValues(idx, "default")); got != 0.5 {
		t.Errorf("rule %s eval seconds %v, want 0.5 (2 × 0.25)", idx, got)
	}
	if got := testutil.ToFloat64(m.ruleSamples.WithLabelValues(idx, "default")); got != 80 {
		t.Errorf("rule %s samples %v, want 80", idx, got)
	}
	if got := testutil.ToFloat64(m.ruleSeconds.WithLabelValues(idx, "default")); got <= 0 {
		t.Errorf("rule %s query seconds %v, want > 0", idx, got)
	}
	for i, s := range asked {
		if s != "all" {
			t.Errorf("query %d asked stats=%q, want all", i, s)
		}
	}
}
