package backends

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/querylimit"
)

func intp(i int) *int { return &i }

func newSet(t *testing.T, reg prometheus.Registerer) (*Set, string) {
	t.Helper()
	dir := t.TempDir()
	def, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: "http://default.invalid:9090"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(def, Options{Dir: dir, Defaults: Defaults{Timeout: time.Second, MaxInFlight: 3, MaxQueue: 5}, Limits: querylimit.NewMetrics(reg)}), dir
}

func querier(t *testing.T, s *Set, name string) adapter.Querier {
	t.Helper()
	q, ok := s.Querier(name)
	if !ok {
		t.Fatalf("backend %q not built", name)
	}
	return q
}

// TestUpdateKeepsRebuildsAndDrops: across updates, an unchanged backend keeps its very client, a
// changed declaration or clientConfig content gets a new one, and an undeclared one is dropped;
// rebuilding a backend's limiter does not panic on its registered metrics.
func TestUpdateKeepsRebuildsAndDrops(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, dir := newSet(t, reg)
	cc := filepath.Join(dir, "c-http.yaml")
	if err := os.WriteFile(cc, []byte("follow_redirects: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := naming.Backend{Name: "a", URL: "http://a.invalid:9090"}
	b := naming.Backend{Name: "b", URL: "http://b.invalid:9090", Headers: map[string]string{"X-Scope-OrgID": "t1"}}
	c := naming.Backend{Name: "c", URL: "http://c.invalid:9090", ClientConfig: "c-http.yaml"}
	if err := s.Update([]naming.Backend{a, b, c}); err != nil {
		t.Fatal(err)
	}
	qa, qb, qc := querier(t, s, "a"), querier(t, s, "b"), querier(t, s, "c")
	if def, ok := s.Querier(""); !ok || def == nil {
		t.Error("no default backend")
	}
	if def, _ := s.Querier(naming.DefaultBackend); def != querier(t, s, "") {
		t.Error(`"default" is not the default backend`)
	}

	// Unchanged: the same clients.
	if err := s.Update([]naming.Backend{a, b, c}); err != nil {
		t.Fatal(err)
	}
	if querier(t, s, "a") != qa || querier(t, s, "b") != qb || querier(t, s, "c") != qc {
		t.Error("an update that changes nothing rebuilt a client")
	}

	// b's header and c's file change, a's limit changes: three new clients, each limiter rebuilt.
	b2 := b
	b2.Headers = map[string]string{"X-Scope-OrgID": "t2"}
	a2 := a
	a2.MaxInFlight = intp(7)
	if err := os.WriteFile(cc, []byte("follow_redirects: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Update([]naming.Backend{a2, b2, c}); err != nil {
		t.Fatal(err)
	}
	if querier(t, s, "a") == qa || querier(t, s, "b") == qb || querier(t, s, "c") == qc {
		t.Error("a changed backend kept its client")
	}

	// c dropped: gone, and its limiter's series too.
	if err := s.Update([]naming.Backend{a2, b2}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Querier("c"); ok {
		t.Error("c still served after it was dropped")
	}
	if got := strings.Join(s.Names(), ","); got != "a,b" {
		t.Errorf("names %s, want a,b", got)
	}
	n, err := testutil.GatherAndCount(reg, "promql_adapter_backend_queries_in_flight")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d in-flight series, want a's and b's", n)
	}
}

// TestUpdateRefusesWithoutChange: a backend that cannot be built (a missing or invalid clientConfig
// file, a reserved header) fails the whole update with an error naming it, and every backend,
// those of the same update that could be built included, stays as it was.
func TestUpdateRefusesWithoutChange(t *testing.T) {
	s, dir := newSet(t, prometheus.NewRegistry())
	a := naming.Backend{Name: "a", URL: "http://a.invalid:9090"}
	if err := s.Update([]naming.Backend{a}); err != nil {
		t.Fatal(err)
	}
	qa := querier(t, s, "a")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("no_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		spec naming.Backend
		want []string
	}{
		{"missing clientConfig", naming.Backend{Name: "x", URL: "http://x.invalid", ClientConfig: "nope.yaml"}, []string{`backend "x"`, "clientConfig", filepath.Join(dir, "nope.yaml")}},
		{"invalid clientConfig", naming.Backend{Name: "x", URL: "http://x.invalid", ClientConfig: bad}, []string{`backend "x"`, "clientConfig", "no_such_key"}},
		{"reserved header", naming.Backend{Name: "x", URL: "http://x.invalid", Headers: map[string]string{"Authorization": "Bearer t"}}, []string{`backend "x"`, "Authorization"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a2 := a
			a2.URL = "http://a2.invalid:9090"
			err := s.Update([]naming.Backend{a2, {Name: "fine", URL: "http://fine.invalid"}, tc.spec})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if querier(t, s, "a") != qa {
				t.Error("a refused update replaced a's client")
			}
			if got := strings.Join(s.Names(), ","); got != "a" {
				t.Errorf("backends %s after a refused update, want a", got)
			}
		})
	}
}

// TestBackendClientSettings: a backend's queries carry its clientConfig (a relative path, from the
// rule file's directory) and its headers, which win over the file's.
func TestBackendClientSettings(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": []any{}}})
	}))
	t.Cleanup(srv.Close)
	s, dir := newSet(t, prometheus.NewRegistry())
	file := "http_headers:\n  X-From-File: {values: [file]}\n  X-Scope-OrgID: {values: [from-file]}\n"
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := naming.Backend{Name: "b", URL: srv.URL, ClientConfig: "b.yaml", Headers: map[string]string{"X-Scope-OrgID": "team-a"}}
	if err := s.Update([]naming.Backend{spec}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := querier(t, s, "b").Query(ctx, "up"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Get("X-From-File") != "file" || got.Get("X-Scope-OrgID") != "team-a" {
		t.Errorf("headers %v: want X-From-File from the file and X-Scope-OrgID from the declaration", got)
	}
}
