package server

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
)

const (
	paGood = `rules:
- seriesQuery: '{__name__="http_requests_total",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)
`
	paNoQuery   = paGood + "- seriesQuery: '{__name__=\"queue_depth\",namespace!=\"\",pod!=\"\"}'\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n"
	paNotPromQL = paNoQuery + "- seriesQuery: '{__name__=\"latency_seconds\",namespace!=\"\",pod!=\"\"}'\n  resources: {template: <<.Resource>>}\n  metricsQuery: 'SELECT <<.Series>> WHERE <<.LabelMatchers>>'\n"
)

// captureLog collects klog's structured lines until the test ends; each call of the result drains them.
func captureLog(t *testing.T) func() string { return testutil.CaptureLogs(t).Drain }

// TestLenientPrometheusAdapterFile: a prometheus-adapter config with an unusable rule starts, the
// other rules serve, and the unusable rule is reported - log line, /readyz/rules, metric - at the
// first load and again on every reload; --strict refuses the same file.
func TestLenientPrometheusAdapterFile(t *testing.T) {
	logs := captureLog(t)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, paNoQuery)
	r := newReloadRig(path)
	var applied []*naming.Rules
	r.file.apply = func(rules *naming.Rules) { applied = append(applied, rules) }

	if _, err := r.file.load(); err != nil {
		t.Fatalf("first load of a prometheus-adapter file with one unusable rule: %v", err)
	}
	if len(applied) != 1 || len(applied[0].Series.SeriesQueries()) != 2 {
		t.Fatalf("applied %v", applied)
	}
	check := func(when string, unusable int, wantRules ...string) {
		t.Helper()
		log := logs()
		d := r.detail()
		for _, rule := range wantRules {
			if !strings.Contains(log, "prometheus-adapter rule unusable") || !strings.Contains(log, fmt.Sprintf(`"rule"="%s"`, rule)) {
				t.Errorf("%s: no log line for %s:\n%s", when, rule, log)
			}
			if !strings.Contains(d, rule+" (seriesQuery") {
				t.Errorf("%s: /readyz/rules lacks %s:\n%s", when, rule, d)
			}
		}
		if !strings.Contains(d, fmt.Sprintf("%d rules are unusable", unusable)) {
			t.Errorf("%s: /readyz/rules:\n%s", when, d)
		}
		if got := r.gauge(t, "promql_adapter_rules_unusable"); got != float64(unusable) {
			t.Errorf("%s: promql_adapter_rules_unusable %v, want %d", when, got, unusable)
		}
		if r.gauge(t, "promql_adapter_rules_last_reload_success") != 1 {
			t.Errorf("%s: the load counts as failed", when)
		}
	}
	check("start", 1, "rules[1]")

	// A reload keeps serving leniently and reports again.
	write(t, path, paNotPromQL)
	if _, err := r.file.load(); err != nil || len(applied) != 2 {
		t.Fatalf("reload: %v, applied %d", err, len(applied))
	}
	check("reload", 2, "rules[1]", "rules[2]")
	if !strings.Contains(r.detail(), "renders invalid PromQL") {
		t.Errorf("the reason is missing:\n%s", r.detail())
	}

	// Fixed: nothing unusable, nothing reported.
	write(t, path, paGood)
	if _, err := r.file.load(); err != nil {
		t.Fatal(err)
	}
	if d := r.detail(); strings.Contains(d, "unusable") || r.gauge(t, "promql_adapter_rules_unusable") != 0 {
		t.Errorf("after the fix:\n%s", d)
	}

	// --strict refuses the file, naming the rule.
	strict := newReloadRig(path)
	strict.file.strict = true
	write(t, path, paNoQuery)
	if _, err := strict.file.load(); err == nil || !strings.Contains(err.Error(), "rules[1]") || !strings.Contains(err.Error(), "metricsQuery: required") {
		t.Errorf("--strict: %v", err)
	}
}

// TestNativeStaysStrict: the native format is refused whole, lenient or not.
func TestNativeStaysStrict(t *testing.T) {
	if _, _, err := compileRules("rules.yaml", FormatAuto, []byte(rulesBad), naming.BuiltinResources(), false); err == nil {
		t.Error("a native file with a broken rule was accepted")
	}
}
