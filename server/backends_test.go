package server

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/backends"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/querylimit"
)

// TestReloadWithUnbuildableBackendIsRejected: a reload whose rules compile but whose backend cannot
// be built (its clientConfig file is missing) is rejected like an invalid file: the last good rules
// and backends keep serving, and the error names the backend and the file.
func TestReloadWithUnbuildableBackendIsRejected(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	v1 := "backends: [{name: b, url: 'http://b.invalid:9090'}]\n" + rulesV1 + "  backend: b\n"
	write(t, path, v1)
	def, err := adapter.NewPromClient(adapter.PrometheusConfig{URL: "http://default.invalid:9090"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	set := backends.New(def, backends.Options{Dir: dir, Limits: querylimit.NewMetrics(prometheus.NewRegistry())})
	r := newReloadRig(path)
	r.file.prepare = func(rules *naming.Rules) error { return set.Update(rules.Backends) }
	if _, err := r.file.load(); err != nil || r.last() != "a" {
		t.Fatalf("first load: %v, applied %q", err, r.last())
	}
	qb, ok := set.Querier("b")
	if !ok {
		t.Fatal("backend b not built")
	}

	bad := "backends: [{name: b, url: 'http://b.invalid:9090', clientConfig: missing.yaml}]\n" + rulesV2 + "  backend: b\n"
	write(t, path, bad)
	_, err = r.file.load()
	if err == nil || !strings.Contains(err.Error(), `backend "b"`) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("reload with an unbuildable backend: %v, want an error naming backend b and its clientConfig", err)
	}
	if r.last() != "a" || r.count() != 1 {
		t.Errorf("the rejected file's rules were applied: %q", r.last())
	}
	if q, _ := set.Querier("b"); q != qb {
		t.Error("the rejected file's backend replaced the serving one")
	}
	if d := r.detail(); !strings.Contains(d, "was rejected") || !strings.Contains(d, `backend "b"`) {
		t.Errorf("/readyz/rules detail:\n%s", d)
	}
	if r.gauge(t, "promql_adapter_rules_last_reload_success") != 0 {
		t.Error("a rejected reload counted as a success")
	}

	// Fixed: applied, and the unchanged backend keeps its client.
	write(t, path, "backends: [{name: b, url: 'http://b.invalid:9090'}]\n"+rulesV2+"  backend: b\n")
	if _, err := r.file.load(); err != nil || r.last() != "a,b" {
		t.Fatalf("fixed file: %v, applied %q", err, r.last())
	}
	if q, _ := set.Querier("b"); q != qb {
		t.Error("a reload that left backend b unchanged rebuilt its client")
	}
}
