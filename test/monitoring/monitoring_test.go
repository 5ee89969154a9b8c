// Package monitoring tests the alert rules, their runbook and the Grafana dashboard the project ships:
// promtool checks the rules and runs their unit tests, every alert has a runbook section, and every
// metric the alerts and the dashboard use is one the binaries register (or one of
// monitoring.External). test/e2e's TestE2EAlertMetricsScraped checks the same names against the
// running binaries' /metrics.
package monitoring

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/internal/monitoring"
)

const root = "../.."

func path(p string) string { return filepath.Join(root, p) }

// promtool is Debian's, from the prometheus package (make deps); without it the test fails.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): install Debian's prometheus package (make deps, hack/install-deps.sh)", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestPromtoolCheckRules(t *testing.T) {
	out := promtool(t, "check", "rules", path(monitoring.RulesFile))
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules: %s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out := promtool(t, "test", "rules", path(monitoring.RuleTestsFile))
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules: %s", out)
	}
}

func rules(t *testing.T) *monitoring.RuleFile {
	t.Helper()
	f, err := monitoring.ReadRules(path(monitoring.RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Alerts()) == 0 {
		t.Fatalf("%s holds no alert", monitoring.RulesFile)
	}
	return f
}

// TestEveryAlertHasAUnitTest: each alert has a promtool test in which it fires.
func TestEveryAlertHasAUnitTest(t *testing.T) {
	b, err := os.ReadFile(path(monitoring.RuleTestsFile))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	want := "../../" + monitoring.RulesFile
	if !slices.Equal(tests.RuleFiles, []string{want}) {
		t.Errorf("%s tests rule files %v, want [%s]", monitoring.RuleTestsFile, tests.RuleFiles, want)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, a := range rules(t).Alerts() {
		if !fires[a.Alert] {
			t.Errorf("alert %s has no promtool test in %s in which it fires", a.Alert, monitoring.RuleTestsFile)
		}
	}
}

var heading = regexp.MustCompile(`(?m)^## (\S+)$`)

// TestAlertsAreComplete: every alert has a severity, a summary and a description, and a runbook_url
// that names its own section of docs/runbook.md; every section of the runbook is an alert's.
func TestAlertsAreComplete(t *testing.T) {
	runbook, err := os.ReadFile(path(monitoring.RunbookFile))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(string(runbook), -1) {
		sections[m[1]] = true
	}
	names := map[string]bool{}
	for _, a := range rules(t).Alerts() {
		names[a.Alert] = true
		if s := a.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", a.Alert, s)
		}
		for _, k := range []string{"summary", "description"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s: no %s", a.Alert, k)
			}
		}
		want := "https://github.com/promql-adapter/promql-adapter/blob/main/" + monitoring.RunbookFile + "#" + strings.ToLower(a.Alert)
		if got := a.Annotations["runbook_url"]; got != want {
			t.Errorf("%s: runbook_url %q, want %q", a.Alert, got, want)
		}
		if !sections[a.Alert] {
			t.Errorf("%s: %s has no section \"## %s\"", a.Alert, monitoring.RunbookFile, a.Alert)
		}
	}
	for s := range sections {
		if !names[s] {
			t.Errorf("%s: section %q is no alert's", monitoring.RunbookFile, s)
		}
	}
}

func known(t *testing.T) map[string]string {
	t.Helper()
	reg, err := monitoring.Registered()
	if err != nil {
		t.Fatal(err)
	}
	for n, src := range monitoring.External {
		reg[n] = src
	}
	return reg
}

// TestAlertMetricsExist: every metric an alert's expression selects is registered by the binaries'
// code (or is one of monitoring.External).
func TestAlertMetricsExist(t *testing.T) {
	reg := known(t)
	for _, a := range rules(t).Alerts() {
		names, err := monitoring.MetricNames(a.Expr)
		if err != nil {
			t.Errorf("%s: %v", a.Alert, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: its expression selects no metric", a.Alert)
		}
		for _, n := range names {
			if _, ok := reg[n]; !ok {
				t.Errorf("%s uses %s, which no binary registers", a.Alert, n)
			}
		}
	}
}

// TestDashboardMetricsExist: every panel's PromQL parses, and every metric it selects is registered by
// the binaries' code (or is one of monitoring.External).
func TestDashboardMetricsExist(t *testing.T) {
	d, err := monitoring.ReadDashboard(path(monitoring.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	reg := known(t)
	qs := d.Queries()
	if len(qs) == 0 {
		t.Fatalf("%s has no query", monitoring.DashboardFile)
	}
	for title, exprs := range qs {
		for _, e := range exprs {
			names, err := monitoring.MetricNames(e)
			if err != nil {
				t.Errorf("panel %q: %v", title, err)
				continue
			}
			for _, n := range names {
				if _, ok := reg[n]; !ok {
					t.Errorf("panel %q uses %s, which no binary registers", title, n)
				}
			}
		}
	}
}

// TestDeployDashboardIsTheChartsOne: deploy/grafana holds the chart's dashboard (make deploy-render copies it).
func TestDeployDashboardIsTheChartsOne(t *testing.T) {
	chart, err := os.ReadFile(path(monitoring.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	deployed, err := os.ReadFile(path(monitoring.DeployDash))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chart, deployed) {
		t.Errorf("%s differs from %s: run make deploy-render", monitoring.DeployDash, monitoring.DashboardFile)
	}
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr    string
		want    []string
		wantErr bool
	}{
		{expr: `up{job="x"} == 0`, want: []string{"up"}},
		{expr: `sum(rate(b_total[5m])) / sum(rate(a_count[5m])) > 0.05`, want: []string{"a_count", "b_total"}},
		{expr: `histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))`, want: []string{"h_bucket"}},
		{expr: `absent(up{job="a"} == 1)`, want: []string{"up"}},
		{expr: `{__name__="named"}`, want: []string{"named"}},
		{expr: `vector(1)`, want: []string{}},
		{expr: `{__name__=~"promql_.*"}`, wantErr: true},
		{expr: `rate(x[5m]`, wantErr: true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := monitoring.MetricNames(tc.expr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
