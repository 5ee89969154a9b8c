package pacompat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/naming"
)

const containerRule = `
- seriesQuery: '{__name__=~"^container_.*"}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
`

func TestParseErrors(t *testing.T) {
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(testdata, "invalid", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tests := []struct {
		about string
		in    string
		want  []string // substrings of the error
	}{
		{"double-quoted metricsQuery strings around unescaped double quotes",
			read("sample-shapes.yaml"), []string{"prometheus-adapter config: yaml: line 12: did not find expected key"}},
		{"a Helm chart values rules: block pasted as config.yaml",
			read("helm-values-rules.yaml"), []string{"line 3: cannot unmarshal !!map into a list of rules", "Helm chart's values"}},
		{"a Helm values key at the top level",
			"custom:" + containerRule, []string{`line 1: unknown field "custom"`, "the rendered config.yaml calls it rules"}},
		{"external is the Helm key for externalRules",
			"external:" + containerRule, []string{`unknown field "external"`, "calls it externalRules"}},
		{"a native promql-adapter file",
			"metrics:\n- name: x\n", []string{`unknown field "metrics"`, "promql-adapter's native format"}},
		{"an unknown rule field names the section, index and seriesQuery",
			"rules:" + containerRule + `- seriesQuery: 'up{job="a"}'
  metricQuery: up
`, []string{`rules[1] (seriesQuery up{job="a"}): line 6: unknown field "metricQuery"`}},
		{"a wrong type inside a rule",
			"externalRules:\n- seriesQuery: up\n  seriesFilters: nope\n", []string{"externalRules[0] (seriesQuery up): line 3: cannot unmarshal !!str `nope` into a list of filter: {is: ...} or {isNot: ...}"}},
		{"every bad rule is reported",
			"rules:\n- seriesQuery: a\n  x: 1\n- seriesQuery: b\n  y: 2\n", []string{`rules[0] (seriesQuery a): line 3: unknown field "x"`, `rules[1] (seriesQuery b): line 5: unknown field "y"`}},
		{"a duplicate key, which yaml.v2 strict mode refuses",
			"rules:\n- seriesQuery: a\n  seriesQuery: b\n", []string{"rules[0]", "already set"}},
		{"resourceRules with an unknown field",
			"resourceRules:\n  cpu: {containerQuery: x}\n  window: 5m\n  disk: {}\n", []string{`resourceRules: line 4: unknown field "disk"`}},
		{"resourceRules with a bad window",
			"resourceRules:\n  window: five minutes\n", []string{"resourceRules:", "not a valid duration string"}},
		{"an empty file", "", []string{"no rules, externalRules or resourceRules"}},
		{"empty lists", "rules: []\nexternalRules: []\n", []string{"no rules, externalRules or resourceRules"}},
		{"not YAML at all", "rules: [\n", []string{"prometheus-adapter config: yaml: line"}},
	}
	for _, tc := range tests {
		t.Run(tc.about, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		about string
		in    string
		want  []string
	}{
		{"a bad name.matches, in the form users see",
			"rules:" + containerRule + containerRule + containerRule + `- seriesQuery: '{__name__=~"^container_.*"}'
  resources: {template: <<.Resource>>}
  name: {matches: "^container_(.*"}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
`, []string{"rules[3] (seriesQuery {__name__=~\"^container_.*\"}): name.matches: error parsing regexp: missing closing ): `^container_(.*`"}},
		{"two capture groups need name.as",
			"rules:\n- seriesQuery: up\n  resources: {template: <<.Resource>>}\n  name: {matches: ^(a)_(b)$}\n  metricsQuery: up\n",
			[]string{"rules[0] (seriesQuery up): name.as: required: name.matches \"^(a)_(b)$\" has 2 capture groups"}},
		{"a filter with both is and isNot",
			"rules:\n- seriesQuery: up\n  seriesFilters: [{is: a, isNot: b}]\n  resources: {template: <<.Resource>>}\n  metricsQuery: up\n",
			[]string{"seriesFilters[0]: cannot have both an `is` (\"a\") and `isNot` (\"b\")"}},
		{"an empty filter",
			"rules:\n- seriesQuery: up\n  seriesFilters: [{}]\n  resources: {template: <<.Resource>>}\n  metricsQuery: up\n",
			[]string{"seriesFilters[0]: must have either an `is` or `isNot`"}},
		{"a bad filter regexp",
			"rules:\n- seriesQuery: up\n  seriesFilters: [{is: a}, {isNot: '['}]\n  resources: {template: <<.Resource>>}\n  metricsQuery: up\n",
			[]string{"seriesFilters[1].isNot: error parsing regexp: missing closing ]"}},
		{"an unknown resource in overrides",
			"rules:\n- seriesQuery: up\n  resources: {overrides: {brand: {group: cheese.io, resource: brand}}}\n  metricsQuery: up\n",
			[]string{`rules[0] (seriesQuery up): resources: overrides.brand: unknown resource "brand.cheese.io"`}},
		{"a resources.template that does not parse",
			"rules:\n- seriesQuery: up\n  resources: {template: 'kube_<<.Resource'}\n  metricsQuery: up\n",
			[]string{"resources: template: not a valid template"}},
		{"a resources.template without the resource",
			"rules:\n- seriesQuery: up\n  resources: {template: 'kube_<<.Group>>'}\n  metricsQuery: up\n",
			[]string{`resources: template "kube_<<.Group>>": must include <<.Resource>>`}},
		{"a resources.template with a field a group-resource lacks",
			"rules:\n- seriesQuery: up\n  resources: {template: '<<.Kind>>'}\n  metricsQuery: up\n",
			[]string{"cannot be executed", "can't evaluate field Kind"}},
		{"a metricsQuery that does not parse as a template",
			"rules:\n- seriesQuery: up\n  resources: {template: <<.Resource>>}\n  metricsQuery: sum(<<.Series>>{<<.LabelMatchers}) \n",
			[]string{"rules[0] (seriesQuery up): metricsQuery: not a valid template"}},
		{"a metricsQuery with a field prometheus-adapter's docs name but its code lacks",
			"rules:\n- seriesQuery: up\n  resources: {template: <<.Resource>>}\n  metricsQuery: sum(<<.Series>>{<<index .LabelMatchersByName \"pod\">>})\n",
			[]string{"metricsQuery: template: metricsQuery:1:", "can't evaluate field LabelMatchersByName", "the fields are .Series"}},
		{"a metricsQuery that renders invalid PromQL",
			"externalRules:\n- seriesQuery: up\n  resources: {namespaced: false}\n  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}\n",
			[]string{"externalRules[0] (seriesQuery up): metricsQuery: renders invalid PromQL for a sample request", "rendered: sum(sample_metric{sample=\"value\"}"}},
		{"no metricsQuery",
			"rules:\n- seriesQuery: up\n  resources: {template: <<.Resource>>}\n",
			[]string{"rules[0] (seriesQuery up): metricsQuery: required"}},
		{"no seriesQuery",
			"rules:\n- resources: {template: <<.Resource>>}\n  metricsQuery: up\n",
			[]string{"rules[0]: seriesQuery: required"}},
		{"a seriesQuery Prometheus would reject, failing every rule's discovery",
			"rules:\n- seriesQuery: '{namespace=\"\"}'\n  resources: {template: <<.Resource>>}\n  metricsQuery: up\n",
			[]string{`seriesQuery: not a valid series selector`}},
		{"resourceRules templates are checked too",
			"resourceRules:\n  cpu: {containerQuery: '<<.Series', resources: {template: <<.Resource>>}}\n",
			[]string{"resourceRules: cpu.containerQuery: not a valid template"}},
		{"all errors at once",
			"rules:\n- seriesQuery: up\n  name: {matches: '('}\n  resources: {template: <<.Resource>>}\n  metricsQuery: up\nexternalRules:\n- seriesQuery: up\n  metricsQuery: '<<'\n",
			[]string{"rules[0] (seriesQuery up): name.matches", "externalRules[0] (seriesQuery up): metricsQuery"}},
	}
	for _, tc := range tests {
		t.Run(tc.about, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_, err = Compile(cfg, naming.BuiltinResources())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Errorf("%T is not a *RuleError", err)
			}
		})
	}
}

func TestRuleErrorFields(t *testing.T) {
	cfg, err := Parse([]byte("externalRules:\n- seriesQuery: |\n    {a=\"b\",\n     c=\"d\"}\n  metricsQuery: up\n  name: {matches: '('}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(cfg, naming.BuiltinResources())
	var re *RuleError
	if !errors.As(err, &re) {
		t.Fatalf("%v is not a RuleError", err)
	}
	if re.Section != SectionExternalRules || re.Index != 0 || re.Field != "name.matches" || !strings.Contains(re.SeriesQuery, "\n") {
		t.Errorf("fields %+v", re)
	}
	if want := `externalRules[0] (seriesQuery {a="b", c="d"}): name.matches: `; !strings.HasPrefix(re.Error(), want) {
		t.Errorf("%q does not start with %q (multi-line seriesQuery on one line)", re.Error(), want)
	}
}

func TestWarnings(t *testing.T) {
	cfg, err := Parse([]byte(`rules:
- seriesQuery: up
  resources: {namespaced: false}
  metricsQuery: up
- seriesQuery: up
  resources: {overrides: {pod: {resource: pod}, po: {resource: pods}, "app.kubernetes.io/name": {group: apps, resource: deployments}}}
  metricsQuery: up
externalRules:
- seriesQuery: up
  metricsQuery: up
resourceRules: {window: 1m}
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(rules.Warnings, "\n")
	for _, w := range []string{
		"rules[0] (seriesQuery up): resources.namespaced applies to externalRules only",
		"rules[0] (seriesQuery up): neither resources.template nor resources.overrides",
		`labels "po" and "pod" both map to pods`,
		`resources.overrides.app.kubernetes.io/name: "app.kubernetes.io/name" is not a Prometheus label name`,
		"rules[1] (seriesQuery up): no label maps to namespaces",
		"externalRules[0] (seriesQuery up): namespaced (the default), but no label maps to namespaces",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("warnings lack %q:\n%s", w, got)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"rules:\n- seriesQuery: up\n", true},
		{"externalRules: []\n", true},
		{"resourceRules:\n  window: 1m\n", true},
		{`{"rules": [{"seriesQuery": "up"}]}`, true},
		{"metrics:\n- name: x\n  resource: pods\n  query: up\n", false},
		{"metrics: []\nrules: []\n", false},
		{"", false},
		{"- a\n- b\n", false},
		{"rules: [\n", false},
		{"other: 1\n", false},
	}
	for _, tc := range tests {
		if got := Detect([]byte(tc.in)); got != tc.want {
			t.Errorf("Detect(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, path := range casePaths(t) {
		if !Detect([]byte(loadCase(t, path).Config)) {
			t.Errorf("%s: not detected as a prometheus-adapter config", path)
		}
	}
	native, err := os.ReadFile("../../testdata/rules/examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if Detect(native) {
		t.Error("testdata/rules/examples.yaml detected as a prometheus-adapter config")
	}
}
