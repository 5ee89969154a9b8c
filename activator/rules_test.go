package activator

import (
	"os"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promql-adapter/promql-adapter/naming"
)

// The rule example of the README parses and only names metrics the activator exports.
func TestRuleExampleUsesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../testdata/rules/activator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := naming.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.done(web, 200)
	m.inFlight.WithLabelValues("shop", "web").Set(0)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	re := regexp.MustCompile(`promql_activator_[a-z_]+`)
	for _, r := range cfg.Metrics {
		for _, name := range re.FindAllString(r.Query, -1) {
			if !have[name] {
				t.Errorf("rule %s uses %s, which the activator does not export (it has %v)", r.Name, name, have)
			}
		}
	}
}
