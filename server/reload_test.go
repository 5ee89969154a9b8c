package server

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
)

const (
	rulesV1  = "metrics:\n- name: a\n  resource: pods\n  query: sum by (pod) (x)\n"
	rulesV2  = rulesV1 + "- name: b\n  resource: pods\n  query: sum by (pod) (y)\n"
	rulesBad = rulesV2 + "- name: c\n  resource: pods\n  query: sum by (pod) (\n"
)

// reloadRig is a ruleFile whose applied rule sets are recorded.
type reloadRig struct {
	file    *ruleFile
	reg     *prometheus.Registry
	mu      sync.Mutex
	applied [][]string // metric names of each applied rule set
}

func newReloadRig(path string) *reloadRig {
	r := &reloadRig{reg: prometheus.NewRegistry()}
	r.file = &ruleFile{path: path, resolver: naming.BuiltinResources(), metrics: adapter.NewMetrics(r.reg)}
	r.file.apply = func(rules *naming.Rules) {
		var names []string
		for _, m := range rules.Metrics {
			names = append(names, m.Name)
		}
		r.mu.Lock()
		r.applied = append(r.applied, names)
		r.mu.Unlock()
	}
	return r
}

func (r *reloadRig) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return ""
	}
	return strings.Join(r.applied[len(r.applied)-1], ",")
}

func (r *reloadRig) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied)
}

func (r *reloadRig) gauge(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (r *reloadRig) detail() string {
	rec := httptest.NewRecorder()
	r.file.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz/rules", nil))
	return rec.Body.String()
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloadValidInvalidUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, rulesV1)
	r := newReloadRig(path)
	if _, err := r.file.load(); err != nil || r.last() != "a" {
		t.Fatalf("first load: %v, applied %q", err, r.last())
	}

	// Unchanged content: nothing applied again.
	if rules, err := r.file.load(); rules != nil || err != nil || r.count() != 1 {
		t.Errorf("unchanged file reapplied: %v %v %d", rules, err, r.count())
	}

	write(t, path, rulesV2)
	if _, err := r.file.load(); err != nil || r.last() != "a,b" {
		t.Fatalf("valid change: %v, applied %q", err, r.last())
	}
	if r.gauge(t, "promql_adapter_rules_loaded") != 2 || r.gauge(t, "promql_adapter_rules_last_reload_success") != 1 {
		t.Error("metrics after a valid reload")
	}

	write(t, path, rulesBad)
	_, err := r.file.load()
	if err == nil || !strings.Contains(err.Error(), "rule 2 (c): field query") {
		t.Fatalf("invalid change: %v", err)
	}
	if r.last() != "a,b" || r.count() != 2 {
		t.Errorf("an invalid file was applied: %q", r.last())
	}
	if r.gauge(t, "promql_adapter_rules_last_reload_success") != 0 || r.gauge(t, "promql_adapter_rules_loaded") != 2 {
		t.Error("metrics after a rejected reload")
	}
	if d := r.detail(); !strings.Contains(d, "serving 2 rules") || !strings.Contains(d, "was rejected") || !strings.Contains(d, "rule 2 (c)") {
		t.Errorf("/readyz/rules detail:\n%s", d)
	}

	// Fixing the file recovers.
	write(t, path, rulesV1)
	if _, err := r.file.load(); err != nil || r.last() != "a" || strings.Contains(r.detail(), "rejected") {
		t.Errorf("fixed file: %v %q\n%s", err, r.last(), r.detail())
	}
}

// TestReloadConfigMapSymlinkSwap mimics the kubelet's atomic ConfigMap update:
// rules.yaml → ..data/rules.yaml, ..data → ..v1, then ..data is renamed to point at ..v2.
func TestReloadConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "rules.yaml"), content)
	}
	version("..v1", rulesV1)
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/rules.yaml", filepath.Join(dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	r := newReloadRig(filepath.Join(dir, "rules.yaml"))
	if _, err := r.file.load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.file.watch(ctx, 20*time.Millisecond)

	version("..v2", rulesV2)
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.last() != "a,b" {
		if time.Now().After(deadline) {
			t.Fatalf("symlink swap not applied within 5s; applied %q", r.last())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFirstLoadOfAnInvalidFileFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, rulesBad)
	r := newReloadRig(path)
	if _, err := r.file.load(); err == nil || r.count() != 0 {
		t.Errorf("invalid first load: %v, applied %d", err, r.count())
	}
}

// countingResolver counts the resources it is asked for: one per rule each time a file is compiled.
type countingResolver struct {
	naming.Resolver
	mu    sync.Mutex
	calls int
}

func (c *countingResolver) Resolve(name string) (naming.Resource, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Resolver.Resolve(name)
}

func (c *countingResolver) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// TestRejectedFileBacksOff checks that a rejected file whose content has not changed is compiled
// again only every retryRejected (a CRD it names may have been installed since), while a changed
// file is compiled at the next check.
func TestRejectedFileBacksOff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, rulesV1)
	r := newReloadRig(path)
	res := &countingResolver{Resolver: naming.BuiltinResources()}
	r.file.resolver = res
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	r.file.now = func() time.Time { return now }
	if _, err := r.file.load(); err != nil {
		t.Fatal(err)
	}
	write(t, path, "metrics:\n- name: w\n  resource: widgets.example.com\n  query: sum by (widget) (y)\n")

	steps := []struct {
		advance     time.Duration
		wantCompile bool
	}{
		{0, true},                 // new content: compiled, rejected
		{time.Second, false},      // unchanged: the rejection stands
		{10 * time.Second, false}, // still within retryRejected
		{DefaultRetryRejected - 11*time.Second, true}, // retryRejected after the last compile: compiled again
		{time.Second, false},
		{DefaultRetryRejected, true},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		before := res.count()
		_, err := r.file.load()
		if err == nil || !strings.Contains(err.Error(), "widgets.example.com") {
			t.Fatalf("step %d: %v; want the rejection naming widgets.example.com", i, err)
		}
		if compiled := res.count() > before; compiled != s.wantCompile {
			t.Errorf("step %d (+%s): compiled %v, want %v", i, s.advance, compiled, s.wantCompile)
		}
	}
	// A changed file is compiled at once, however recent the last rejection.
	write(t, path, rulesV2)
	now = now.Add(time.Second)
	if _, err := r.file.load(); err != nil || r.last() != "a,b" {
		t.Errorf("changed file: %v, applied %q", err, r.last())
	}
}
