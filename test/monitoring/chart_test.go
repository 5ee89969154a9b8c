package monitoring

import (
	"os"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/promql-adapter/promql-adapter/internal/monitoring"
)

// TestPrometheusRuleIsTheRuleFile: deploy/prometheus-rule.yaml (the chart's PrometheusRule, rendered
// by make deploy-render; test/chart checks that) holds exactly the groups of the rule file.
func TestPrometheusRuleIsTheRuleFile(t *testing.T) {
	b, err := os.ReadFile(path(monitoring.PrometheusCR))
	if err != nil {
		t.Fatal(err)
	}
	var cr struct {
		APIVersion string              `json:"apiVersion"`
		Kind       string              `json:"kind"`
		Metadata   map[string]any      `json:"metadata"`
		Spec       monitoring.RuleFile `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(b, &cr); err != nil {
		t.Fatal(err)
	}
	if cr.APIVersion != "monitoring.coreos.com/v1" || cr.Kind != "PrometheusRule" {
		t.Errorf("%s is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", monitoring.PrometheusCR, cr.APIVersion, cr.Kind)
	}
	if want := rules(t); !reflect.DeepEqual(&cr.Spec, want) {
		t.Errorf("%s's spec differs from %s: run make deploy-render", monitoring.PrometheusCR, monitoring.RulesFile)
	}
}
