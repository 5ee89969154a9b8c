package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promql-adapter/promql-adapter/naming"
)

// Series (prometheus-adapter rules' discovery) asks for names and label names with match[], never
// for the series themselves, and bounds the calls with the discovery timeout, not the query timeout.
func TestSeriesThroughLabelAPIs(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	labelsOf := map[string][]string{
		"http_requests_total": {"__name__", "namespace", "pod", "path"},
		"jobs_total":          {"__name__", "namespace", "job_name"},
		"gone_total":          {},
	}
	slow := 0 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		match := r.Form["match[]"]
		mu.Lock()
		calls = append(calls, r.URL.Path+" "+strings.Join(match, ","))
		mu.Unlock()
		time.Sleep(slow)
		var data any
		switch r.URL.Path {
		case "/api/v1/label/__name__/values":
			data = []string{"gone_total", "http_requests_total", "jobs_total"}
		case "/api/v1/labels":
			for name, ls := range labelsOf {
				if len(match) == 1 && strings.Contains(match[0], `__name__="`+name+`"`) {
					data = ls
				}
			}
		default:
			http.Error(w, "not here: "+r.URL.Path, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
	}))
	t.Cleanup(srv.Close)
	c, err := NewPromClient(PrometheusConfig{URL: srv.URL, Timeout: 50 * time.Millisecond, DiscoveryTimeout: 5 * time.Second}, NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	slow = 100 * time.Millisecond // longer than a query may take, well within discovery's bound
	got, err := c.Series(context.Background(), `{__name__=~".*_total",namespace!=""}`, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []naming.SeriesLabels{
		{Query: `{__name__=~".*_total",namespace!=""}`, Name: "http_requests_total", Labels: []string{"namespace", "path", "pod"}},
		{Query: `{__name__=~".*_total",namespace!=""}`, Name: "jobs_total", Labels: []string{"job_name", "namespace"}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("series\n got %v\nwant %v", got, want)
	}
	sort.Strings(calls)
	wantCalls := []string{
		`/api/v1/label/__name__/values {__name__=~".*_total",namespace!=""}`,
		`/api/v1/labels {__name__="gone_total",__name__=~".*_total",namespace!=""}`,
		`/api/v1/labels {__name__="http_requests_total",__name__=~".*_total",namespace!=""}`,
		`/api/v1/labels {__name__="jobs_total",__name__=~".*_total",namespace!=""}`,
	}
	if fmt.Sprint(calls) != fmt.Sprint(wantCalls) {
		t.Errorf("calls\n got %q\nwant %q", calls, wantCalls)
	}

	// A selector that names its metric needs no names call.
	calls = nil
	if _, err := c.Series(context.Background(), `http_requests_total{pod!=""}`, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(calls) != fmt.Sprint([]string{`/api/v1/labels {__name__="http_requests_total",pod!=""}`}) {
		t.Errorf("calls %q", calls)
	}

	// Past the discovery timeout: an error that names it.
	c.discoveryTimeout = 20 * time.Millisecond
	if _, err := c.Series(context.Background(), `http_requests_total`, time.Now().Add(-time.Hour)); err == nil || !strings.Contains(err.Error(), "discovery timeout") {
		t.Errorf("slow discovery: %v", err)
	}
}
