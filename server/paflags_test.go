package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// parsePA parses args with every flag the server registers, as the command line does.
func parsePA(t *testing.T, args ...string) *Options {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(append([]string{"--config=rules.yaml", "--trust-loopback"}, args...)); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestPrometheusAdapterFlags(t *testing.T) {
	for _, tc := range []struct {
		name           string
		args           []string
		relist, maxAge time.Duration
		wantErr        string
	}{
		{"defaults", nil, time.Minute, 10 * time.Minute, ""},
		{"relist below the max age keeps it", []string{"--metrics-relist-interval=30s"}, 30 * time.Second, 10 * time.Minute, ""},
		{"relist above the max age raises it, as prometheus-adapter's default does", []string{"--metrics-relist-interval=30m"}, 30 * time.Minute, 30 * time.Minute, ""},
		{"both", []string{"--metrics-relist-interval=2m", "--metrics-max-age=5m"}, 2 * time.Minute, 5 * time.Minute, ""},
		{"max age below relist", []string{"--metrics-relist-interval=5m", "--metrics-max-age=1m"}, 5 * time.Minute, time.Minute, "--series-max-age"},
		{"verb GET", []string{"--prometheus-verb=GET"}, time.Minute, 10 * time.Minute, ""},
		{"verb bogus", []string{"--prometheus-verb=PUT"}, time.Minute, 10 * time.Minute, `--prometheus-verb "PUT"`},
		{"both auth sources", []string{"--prometheus-auth-incluster", "--prometheus-auth-config=kc"}, time.Minute, 10 * time.Minute, "exclude each other"},
		{"cert without key", []string{"--prometheus-client-tls-cert-file=c.pem"}, time.Minute, 10 * time.Minute, "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parsePA(t, tc.args...)
			err := o.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if o.SeriesRelistInterval != tc.relist || o.SeriesMaxAge != tc.maxAge {
				t.Errorf("relist %s max age %s, want %s %s", o.SeriesRelistInterval, o.SeriesMaxAge, tc.relist, tc.maxAge)
			}
		})
	}
}

func TestPrometheusAdapterAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const kc = `apiVersion: v1
kind: Config
current-context: prom
contexts:
- name: prom
  context: {cluster: prom, user: prom}
clusters:
- name: prom
  cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmZha2UKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    tls-server-name: prometheus.monitoring.svc
users:
- name: prom
  user:
    token: s3cret
`
	t.Run("kubeconfig", func(t *testing.T) {
		o := parsePA(t, "--prometheus-auth-config="+write("kc.yaml", kc))
		cfg, err := o.PrometheusConfig()
		if err != nil {
			t.Fatal(err)
		}
		h := cfg.HTTP
		if !strings.Contains(h.TLSConfig.CA, "fake") || h.TLSConfig.ServerName != "prometheus.monitoring.svc" ||
			h.Authorization == nil || string(h.Authorization.Credentials) != "s3cret" || h.Authorization.Type != "Bearer" {
			t.Errorf("from the kubeconfig: %+v %+v", h.TLSConfig, h.Authorization)
		}
	})
	t.Run("kubeconfig with client certificate files and basic auth", func(t *testing.T) {
		c, k2 := write("c.pem", "cert"), write("k.pem", "key")
		k := strings.Replace(kc, "    token: s3cret\n", "    client-certificate: "+c+"\n    client-key: "+k2+"\n    username: u\n    password: p\n", 1)
		o := parsePA(t, "--prometheus-auth-config="+write("kc2.yaml", k))
		cfg, err := o.PrometheusConfig()
		if err != nil {
			t.Fatal(err)
		}
		h := cfg.HTTP
		if h.TLSConfig.CertFile != c || h.TLSConfig.KeyFile != k2 || h.BasicAuth == nil || h.BasicAuth.Username != "u" {
			t.Errorf("from the kubeconfig: %+v %+v", h.TLSConfig, h.BasicAuth)
		}
	})
	t.Run("exec plugins are refused", func(t *testing.T) {
		k := strings.Replace(kc, "    token: s3cret\n", "    exec: {apiVersion: client.authentication.k8s.io/v1, command: get-token, interactiveMode: Never}\n", 1)
		o := parsePA(t, "--prometheus-auth-config="+write("kc3.yaml", k))
		if _, err := o.PrometheusConfig(); err == nil || !strings.Contains(err.Error(), "exec") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("missing kubeconfig names the flag", func(t *testing.T) {
		o := parsePA(t, "--prometheus-auth-config="+filepath.Join(dir, "nope"))
		if _, err := o.PrometheusConfig(); err == nil || !strings.Contains(err.Error(), "--prometheus-auth-config") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("in-cluster", func(t *testing.T) {
		cfg, err := parsePA(t, "--prometheus-auth-incluster").PrometheusConfig()
		if err != nil {
			t.Fatal(err)
		}
		h := cfg.HTTP
		if h.TLSConfig.CAFile != inClusterCAFile || h.Authorization == nil || h.Authorization.CredentialsFile != inClusterTokenFile {
			t.Errorf("in-cluster: %+v %+v", h.TLSConfig, h.Authorization)
		}
	})
	t.Run("client certificate; the native shorthands still win", func(t *testing.T) {
		cfg, err := parsePA(t, "--prometheus-client-tls-cert-file=/c.pem", "--prometheus-client-tls-key-file=/k.pem",
			"--prometheus-auth-incluster", "--prometheus-ca-file=/ca.pem").PrometheusConfig()
		if err != nil {
			t.Fatal(err)
		}
		h := cfg.HTTP
		if h.TLSConfig.CertFile != "/c.pem" || h.TLSConfig.KeyFile != "/k.pem" || h.TLSConfig.CAFile != "/ca.pem" {
			t.Errorf("tls: %+v", h.TLSConfig)
		}
	})
}

// TestPrometheusVerbReachesTheClient: --prometheus-verb is honoured, not only accepted.
func TestPrometheusVerbReachesTheClient(t *testing.T) {
	for _, verb := range []string{"GET", "POST", "get"} {
		o := parsePA(t, "--prometheus-verb="+verb)
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		cfg, err := o.PrometheusConfig()
		if err != nil || cfg.Verb != verb {
			t.Errorf("--prometheus-verb=%s: client verb %q %v", verb, cfg.Verb, err)
		}
	}
}

// TestPrometheusAuthInClusterOverHTTPWarns (review N6): our ServiceAccount token sent to an http://
// Prometheus is logged as a warning, once; over https it is not.
func TestPrometheusAuthInClusterOverHTTPWarns(t *testing.T) {
	logs := captureLog(t)
	for _, c := range []struct {
		url  string
		warn bool
	}{
		{"http://prometheus.monitoring.svc:9090", true},
		{"HTTP://prometheus.monitoring.svc:9090", true},
		{"https://prometheus.monitoring.svc:9091", false},
	} {
		o := parsePA(t, "--prometheus-auth-incluster", "--prometheus-url="+c.url)
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := o.Validate(); err != nil { // validated twice (flags, then Run): logged once
			t.Fatal(err)
		}
		log := logs()
		if n := strings.Count(log, "--prometheus-auth-incluster sends our ServiceAccount token"); n != map[bool]int{true: 1}[c.warn] || c.warn && !strings.Contains(log, c.url) {
			t.Errorf("%s: %d warnings, want %v:\n%s", c.url, n, c.warn, log)
		}
	}
}
