package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// valueProm is an httptest Prometheus whose every sample is pod web-0 in shop with value v, and
// whose label values API lists names.
func valueProm(t *testing.T, v float64, names ...string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/label/__name__/values") {
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": names})
			return
		}
		result := []any{map[string]any{"metric": map[string]string{"namespace": "shop", "pod": "web-0"}, "value": []any{1700000000, fmt.Sprint(v)}}}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCheckAndExplainNameTheBackend: check runs each rule, discovery included, against its own
// backend and names the backend of every rule that is not the default; explain prints the
// backend's name and URL.
func TestCheckAndExplainNameTheBackend(t *testing.T) {
	def, b := valueProm(t, 1, "app_default"), valueProm(t, 2, "app_b")
	rules := fmt.Sprintf(`backends: [{name: b, url: %q}]
metrics:
- {name: load, resource: pods, query: "sum by (namespace, pod) (load)"}
- {name: load_b, resource: pods, backend: b, query: "sum by (namespace, pod) (load)"}
- resource: pods
  backend: b
  query: sum by (namespace, pod) (__series__)
  discover: {series: '{__name__=~"app_.+"}'}
`, b)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if code := RunCheck(ctx, []string{"--config", path, "--prometheus-url", def}, &out, &errOut); code != ExitOK {
		t.Fatalf("check: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	table := out.String()
	for _, re := range []string{`(?m)^metrics\[0\] +load +pods +1 +shop/web-0=1 +ok$`, `(?m)^metrics\[1\] \(backend b\) +load_b +pods +1 +shop/web-0=2 +ok$`,
		`(?m)^metrics\[2\] \(backend b\) +app_b +pods +1 +shop/web-0=2 +ok$`} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("check table lacks a line matching %s:\n%s", re, table)
		}
	}
	if strings.Contains(table, "app_default") {
		t.Errorf("discovery on b listed the default backend's names:\n%s", table)
	}
	out.Reset()
	if code := RunCheck(ctx, []string{"--json", "--config", path, "--prometheus-url", def}, &out, &errOut); code != ExitOK {
		t.Fatalf("check --json: exit %d\n%s", code, errOut.String())
	}
	var report struct{ Rules []RuleReport }
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Rules) != 3 || report.Rules[0].Backend != "" || report.Rules[1].Backend != "b" || report.Rules[2].Backend != "b" {
		t.Errorf("JSON rules: %+v", report.Rules)
	}

	for _, tc := range []struct{ metric, want string }{
		{"load", "backend: default (" + def + ")"},
		{"load_b", "backend: b (" + b + ")"},
		{"app_b", "backend: b (" + b + ")"},
	} {
		out.Reset()
		code := RunExplain(ctx, []string{"--config", path, "--prometheus-url", def, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/" + tc.metric}, &out, &errOut)
		if code != ExitOK || !strings.Contains(out.String(), tc.want+"\n") {
			t.Errorf("explain %s: exit %d, want %q:\n%s\n%s", tc.metric, code, tc.want, out.String(), errOut.String())
		}
	}
}
