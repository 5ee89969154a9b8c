package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
