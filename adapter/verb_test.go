package adapter

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/config"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
)

// fakeVerbProm is a Prometheus API that records the method of each call and may refuse some:
// refuse answers that code to a POST, tooLong answers 414 to a GET whose URL is longer.
type fakeVerbProm struct {
	refuse  int
	tooLong int

	mu      sync.Mutex
	methods []string // "POST /api/v1/query", ...
}

func (f *fakeVerbProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.methods = append(f.methods, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && f.refuse != 0:
		http.Error(w, "method not allowed here", f.refuse)
		return
	case r.Method == http.MethodGet && f.tooLong > 0 && len(r.URL.RequestURI()) > f.tooLong:
		http.Error(w, "URI Too Long", http.StatusRequestURITooLong)
		return
	case r.Method == http.MethodGet && r.Header.Get("Content-Type") != "":
		http.Error(w, "a GET with a Content-Type", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/api/v1/query":
		if r.Form.Get("query") == "" {
			http.Error(w, "no query", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"q":"` + strings.ReplaceAll(r.Form.Get("query"), `"`, ``) + `"},"value":[1700000000,"3"]}]}}`))
	case "/api/v1/label/__name__/values":
		if len(r.Form["match[]"]) == 0 {
			http.Error(w, "no match[]", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"status":"success","data":["m_a","m_b"]}`))
	case "/api/v1/labels":
		_, _ = w.Write([]byte(`{"status":"success","data":["__name__","pod"]}`))
	default:
		http.NotFound(w, r)
	}
}

// take returns the methods seen since the last take.
func (f *fakeVerbProm) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.methods
	f.methods = nil
	return m
}

func countMethod(seen []string, method string) int {
	n := 0
	for _, s := range seen {
		if strings.HasPrefix(s, method+" ") {
			n++
		}
	}
	return n
}

// TestPrometheusVerb: POST (the default) falls back to GET for good on 405 or 501; GET sends every
// query and discovery call by GET; a GET refused with 414 gets an error that names the flag.
func TestPrometheusVerb(t *testing.T) {
	for _, tc := range []struct {
		name            string
		verb            string
		refuse, tooLong int
		// first is the methods of the first query; later, of the calls after it
		first      []string
		laterPosts int // POSTs expected in the later calls (the label values API is GET only)
		err        []string
	}{
		{name: "POST accepted", verb: "", first: []string{"POST /api/v1/query"}, laterPosts: 3},
		{name: "POST given accepted", verb: "POST", first: []string{"POST /api/v1/query"}, laterPosts: 3},
		{name: "405 falls back to GET and remembers", refuse: http.StatusMethodNotAllowed, first: []string{"POST /api/v1/query", "GET /api/v1/query"}},
		{name: "501 falls back to GET and remembers", verb: "post", refuse: http.StatusNotImplemented, first: []string{"POST /api/v1/query", "GET /api/v1/query"}},
		{name: "GET never posts", verb: "GET", first: []string{"GET /api/v1/query"}},
		{name: "GET too long", verb: "GET", tooLong: 40, err: []string{"414", "URI too long", "--prometheus-verb=POST"}},
		{name: "POST refused, GET too long", refuse: http.StatusMethodNotAllowed, tooLong: 40, err: []string{"414", "URI too long", "405", "--prometheus-verb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeVerbProm{refuse: tc.refuse, tooLong: tc.tooLong}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			c, err := NewPromClient(PrometheusConfig{URL: srv.URL, HTTP: config.DefaultHTTPClientConfig, Verb: tc.verb}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			vec, err := c.Query(ctx, `sum(rate(http_requests_total{namespace="shop"}[2m]))`)
			if len(tc.err) > 0 {
				if err == nil {
					t.Fatalf("no error; calls %v", fake.take())
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil || len(vec) != 1 || vec[0].Value != 3 || !strings.Contains(vec[0].Metric.String(), "http_requests_total") {
				t.Fatalf("query: %v %v", vec, err)
			}
			if got := fake.take(); strings.Join(got, ",") != strings.Join(tc.first, ",") {
				t.Errorf("first query's calls %v, want %v", got, tc.first)
			}
			if _, err := c.Query(ctx, "up"); err != nil {
				t.Fatal(err)
			}
			names, err := c.SeriesNames(ctx, `{__name__=~"m_.*"}`, time.Now().Add(-time.Hour))
			if err != nil || strings.Join(names, ",") != "m_a,m_b" {
				t.Fatalf("names %v %v", names, err)
			}
			series, err := c.Series(ctx, `{__name__=~"m_.*"}`, time.Now().Add(-time.Hour))
			if err != nil || len(series) != 2 {
				t.Fatalf("series %v %v", series, err)
			}
			later := fake.take()
			if n := countMethod(later, http.MethodPost); n != tc.laterPosts || len(later) != 5 {
				t.Errorf("later calls %v: %d POSTs, want %d of 5", later, n, tc.laterPosts)
			}
		})
	}
}

// TestPrometheusVerbFallbackLoggedOnce: the fallback to GET is logged once, at info level, however
// many calls follow.
func TestPrometheusVerbFallbackLoggedOnce(t *testing.T) {
	logs := testutil.CaptureLogs(t)
	srv := httptest.NewServer(&fakeVerbProm{refuse: http.StatusMethodNotAllowed})
	defer srv.Close()
	c, err := NewPromClient(PrometheusConfig{URL: srv.URL, HTTP: config.DefaultHTTPClientConfig}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Query(context.Background(), fmt.Sprintf("up + %d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := logs.Count("Prometheus refused a POST; queries and discovery go by GET from now on", `"status"=405`); n != 1 {
		t.Errorf("%d fallback lines, want 1:\n%s", n, logs)
	}
}
