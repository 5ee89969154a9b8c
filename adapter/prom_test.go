package adapter

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/config"
)

// TestClientConfigReachesPrometheus checks that TLS verification, the bearer token file and
// extra headers from a Prometheus http_config file arrive at the server.
func TestClientConfigReachesPrometheus(t *testing.T) {
	var gotAuth, gotTenant string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotTenant = r.Header.Get("Authorization"), r.Header.Get("X-Scope-OrgID")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1700000000,"3"]}]}}`))
	}))
	defer srv.Close()

	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", string(ca))
	write("token", "s3cret\n")
	write("client.yaml", `
tls_config:
  ca_file: ca.pem
authorization:
  credentials_file: token
http_headers:
  X-Scope-OrgID:
    values: [tenant-a]
`)
	httpCfg, err := LoadHTTPClientConfig(filepath.Join(dir, "client.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewPromClient(PrometheusConfig{URL: srv.URL, HTTP: httpCfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vec, err := c.Query(context.Background(), "up")
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].Value != 3 || gotAuth != "Bearer s3cret" || gotTenant != "tenant-a" {
		t.Errorf("vec %v auth %q tenant %q", vec, gotAuth, gotTenant)
	}

	// Without the CA the same server is refused: TLS is verified.
	c, err = NewPromClient(PrometheusConfig{URL: srv.URL, HTTP: config.DefaultHTTPClientConfig}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query(context.Background(), "up"); err == nil || !strings.Contains(err.Error(), "--prometheus-ca-file") {
		t.Errorf("query to an unverified TLS server: %v; want a refusal that names the CA flags", err)
	}
}

func TestLoadHTTPClientConfigErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("tls_confg: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHTTPClientConfig(p); err == nil {
		t.Error("unknown field accepted")
	}
	if _, err := LoadHTTPClientConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestHTTPErrorsSayWhy checks that a refused request's error carries the status, the response
// body (which the Prometheus client leaves out) and, for 401 and 403, where to look.
func TestHTTPErrorsSayWhy(t *testing.T) {
	tests := []struct {
		code int
		body string
		want []string
	}{
		{401, "no org id\n", []string{"401", "no org id", "--prometheus-client-config"}},
		{403, "tenant not allowed", []string{"403", "tenant not allowed", "forbidden"}},
		{502, "<html><body>bad\ngateway</body></html>", []string{"502", "<html><body>bad gateway</body></html>"}},
		{404, strings.Repeat("x", 300), []string{"404", strings.Repeat("x", 200) + "..."}},
	}
	for _, tc := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.code)
			_, _ = w.Write([]byte(tc.body))
		}))
		c, err := NewPromClient(PrometheusConfig{URL: srv.URL, HTTP: config.DefaultHTTPClientConfig}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Query(context.Background(), "up")
		srv.Close()
		if err == nil {
			t.Fatalf("%d: no error", tc.code)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%d: error %q lacks %q", tc.code, err, w)
			}
		}
		var qe *QueryError
		if !errors.As(err, &qe) || qe.Bad {
			t.Errorf("%d: %v is not a retryable QueryError", tc.code, err)
		}
		if statusOf(err) != "client_error" && statusOf(err) != "server_error" {
			t.Errorf("%d: telemetry reason %q", tc.code, statusOf(err))
		}
	}
}
