package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"

	"github.com/promql-adapter/promql-adapter/inspect"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// TestSecuredPrometheus serves the integration rules from a real Prometheus that only answers
// HTTPS with basic auth (its --web.config.file), reached through --prometheus-client-config:
// the adapter's values equal Prometheus's, and `check` says what is wrong when the CA or the
// credentials are missing.
func TestSecuredPrometheus(t *testing.T) {
	dir := t.TempDir()
	tlsFiles, err := localcluster.NewLoopbackTLS(filepath.Join(dir, "tls"), "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	const user, password = "adapter", `s3cret "with" quotes`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prom, err := promrun.Start(ctx, promrun.Options{
		WorkDir:        filepath.Join(dir, "prometheus"),
		ScrapeInterval: time.Second,
		Targets:        []promrun.Target{{Job: "app", Address: env.exporter.Addr()}},
		Web:            &promrun.Web{CertFile: tlsFiles.CertFile, KeyFile: tlsFiles.KeyFile, CAFile: tlsFiles.CAFile, User: user, Password: password},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	if !strings.HasPrefix(prom.URL(), "https://") {
		t.Fatalf("secured prometheus at %s", prom.URL())
	}
	if err := prom.WaitForSeries(ctx, `count_over_time(elu_utilization{namespace="shop"}[1m]) >= 2`, pods); err != nil {
		t.Fatal(err)
	}

	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	passwordFile := write("password", password)
	full := write("client.yaml", fmt.Sprintf("tls_config: {ca_file: %s}\nbasic_auth: {username: %s, password_file: %s}\n", tlsFiles.CAFile, user, passwordFile))
	caOnly := write("client-ca-only.yaml", fmt.Sprintf("tls_config: {ca_file: %s}\n", tlsFiles.CAFile))

	opts := adapterOptions(integrationRules, prom.URL())
	opts.PrometheusClientConfig = full
	base := startTestAdapter(t, opts)

	t.Run("values through TLS and basic auth", func(t *testing.T) {
		var list cmv1beta2.MetricValueList
		getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization", 200, &list)
		v, _, _, err := prom.API().Query(context.Background(), `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want := byLabel(v.(model.Vector), "pod")
		if len(list.Items) != pods || len(want) != pods {
			t.Fatalf("adapter returned %d items, prometheus %d", len(list.Items), len(want))
		}
		for _, it := range list.Items {
			if it.Value.MilliValue() != milli(want[it.DescribedObject.Name]) {
				t.Errorf("%s: adapter %s, prometheus %v", it.DescribedObject.Name, it.Value.String(), want[it.DescribedObject.Name])
			}
		}
	})

	tests := []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"no CA", nil, inspect.ExitBroken, "certificate signed by unknown authority (give the CA"},
		{"no credentials", []string{"--prometheus-client-config", caOnly}, inspect.ExitBroken, "401: Unauthorized (Prometheus refused the credentials"},
		{"CA and credentials", []string{"--prometheus-client-config", full}, inspect.ExitOK, "7 rules, 0 broken"},
	}
	for _, tc := range tests {
		t.Run("check, "+tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--config", integrationRules, "--prometheus-url", prom.URL()}, tc.args...)
			code := inspect.RunCheck(context.Background(), args, &out, &errOut)
			all := out.String() + errOut.String()
			if code != tc.code || !strings.Contains(all, tc.output) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tc.code, tc.output, all)
			}
			if code != inspect.ExitOK {
				t.Logf("check says:\n%s", all)
			}
		})
	}
}
