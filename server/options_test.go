package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(o *Options)
		wantErr string
	}{
		{"trust-loopback defaults the bind address to 127.0.0.1", func(o *Options) { o.TrustLoopback = true }, ""},
		{"trust-loopback refuses a non-loopback address", func(o *Options) {
			o.TrustLoopback = true
			o.Server.SecureServing.BindAddress = net.ParseIP("10.0.0.1")
		}, "needs a loopback --bind-address"},
		{"config is required", func(o *Options) { o.TrustLoopback, o.RulesFile = true, "" }, "--config is required"},
		{"bad header", func(o *Options) { o.TrustLoopback, o.PrometheusHeaders = true, []string{"X-Scope-OrgID"} }, "want Name=Value"},
		{"max age below relist", func(o *Options) { o.TrustLoopback, o.SeriesMaxAge = true, 1 }, "--series-max-age"},
		{"coalesce-freshness at the maximum", func(o *Options) { o.TrustLoopback, o.Coalesce.Freshness = true, 5*time.Minute }, ""},
		{"coalesce-freshness above the maximum", func(o *Options) { o.TrustLoopback, o.Coalesce.Freshness = true, 5*time.Minute+1 }, "--coalesce-freshness 5m0.000000001s: want 0 (off) up to 5m"},
		{"negative coalesce-freshness", func(o *Options) { o.TrustLoopback, o.Coalesce.Freshness = true, -time.Second }, "--coalesce-freshness -1s"},
		{"no coalescing entries", func(o *Options) { o.TrustLoopback, o.Coalesce.MaxEntries = true, 0 }, "--coalesce-max-entries must be at least 1"},
		{"negative query limit", func(o *Options) { o.TrustLoopback, o.PrometheusMaxInFlight = true, -1 }, "--prometheus-max-inflight (-1)"},
		{"negative queue", func(o *Options) { o.TrustLoopback, o.PrometheusMaxQueue = true, -5 }, "--prometheus-max-queue (-5) cannot be negative"},
		{"no query limit", func(o *Options) { o.TrustLoopback, o.PrometheusMaxInFlight, o.PrometheusMaxQueue = true, 0, 0 }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			o.RulesFile = "rules.yaml"
			tc.mutate(o)
			err := o.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !o.Server.SecureServing.BindAddress.IsLoopback() {
					t.Errorf("bind address %s", o.Server.SecureServing.BindAddress)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestPrometheusConfigShorthandsOverrideTheFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "client.yaml")
	if err := os.WriteFile(file, []byte("tls_config: {insecure_skip_verify: false}\nhttp_headers: {A: {values: [a]}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := NewOptions()
	o.PrometheusClientConfig = file
	o.PrometheusInsecure = true
	o.PrometheusBearerFile = filepath.Join(dir, "token")
	o.PrometheusHeaders = []string{"X-Scope-OrgID=tenant-a"}
	cfg, err := o.PrometheusConfig()
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.HTTP
	if !h.TLSConfig.InsecureSkipVerify || h.Authorization == nil || h.Authorization.CredentialsFile != o.PrometheusBearerFile ||
		h.HTTPHeaders.Headers["X-Scope-OrgID"].Values[0] != "tenant-a" || h.HTTPHeaders.Headers["A"].Values[0] != "a" {
		t.Errorf("client config %+v", h)
	}
}

func TestLoadRulesRefusesInvalidFile(t *testing.T) {
	_, _, err := LoadRules("../testdata/rules/does-not-exist.yaml", nil)
	if err == nil {
		t.Fatal("missing file accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("metrics:\n- name: a\n  resource: pods\n  query: sum(\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadRules(bad, naming.BuiltinResources())
	if err == nil || !strings.Contains(err.Error(), "rule 0 (a): field query") {
		t.Errorf("error %v", err)
	}
}

// TestProfilingOffByDefault checks that /debug/pprof and /debug/flags are installed only when asked for.
func TestProfilingOffByDefault(t *testing.T) {
	tests := []struct {
		args                  []string
		profiling, contention bool
	}{
		{nil, false, false},
		{[]string{"--profiling"}, true, false},
		{[]string{"--profiling", "--contention-profiling"}, true, true},
	}
	for _, tc := range tests {
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var cfg genericapiserver.Config
		if err := applyFeatures(o.Server.Features, &cfg); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.EnableProfiling != tc.profiling || cfg.EnableContentionProfiling != tc.contention {
			t.Errorf("%v: profiling %v, contention %v; want %v, %v", tc.args, cfg.EnableProfiling, cfg.EnableContentionProfiling, tc.profiling, tc.contention)
		}
	}
}

// TestPriorityAndFairnessFlagSaysItIsIgnored checks that --enable-priority-and-fairness, which the
// adapter does not implement (kube-apiserver in front of it already applies APF), starts the server
// and says in one log line that it does nothing.
func TestPriorityAndFairnessFlagSaysItIsIgnored(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	NewOptions().AddFlags(fs)
	if u := fs.Lookup("enable-priority-and-fairness").Usage; !strings.HasPrefix(u, "does nothing") {
		t.Errorf("--help promises what the flag does not do: %q", u)
	}
	for _, set := range []bool{false, true} {
		logs := captureLog(t)
		o := NewOptions()
		o.Server.Features.EnablePriorityAndFairness = set
		var cfg genericapiserver.Config
		if err := applyFeatures(o.Server.Features, &cfg); err != nil {
			t.Fatalf("set=%v: %v", set, err)
		}
		if cfg.FlowControl != nil {
			t.Errorf("set=%v: flow control configured", set)
		}
		n := strings.Count(logs(), "--enable-priority-and-fairness")
		if want := map[bool]int{false: 0, true: 1}[set]; n != want {
			t.Errorf("set=%v: %d log lines name the flag, want %d:\n%s", set, n, want, logs())
		}
	}
}

// TestCoalesceFlags: coalescing is off by default (a query per request) with 10,000 entries; the
// flags set the provider's default freshness, and the cache exists either way, so a rule's own
// freshness shares.
func TestCoalesceFlags(t *testing.T) {
	tests := []struct {
		args      []string
		freshness time.Duration
		entries   int
	}{
		{nil, 0, 10000},
		{[]string{"--coalesce-freshness=15s", "--coalesce-max-entries=50"}, 15 * time.Second, 50},
	}
	for _, tc := range tests {
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if o.Coalesce.Freshness != tc.freshness || o.Coalesce.MaxEntries != tc.entries {
			t.Errorf("%v: %+v, want freshness %s and %d entries", tc.args, o.Coalesce, tc.freshness, tc.entries)
		}
		var popts adapter.Options
		o.coalescing(&popts)
		if popts.Coalesce == nil || popts.Freshness != tc.freshness || popts.Coalesce.MaxAge() != naming.MaxFreshness {
			t.Errorf("%v: provider options %+v", tc.args, popts)
		}
	}
}
