package naming

import (
	"strings"
	"testing"

	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestValidateNames(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	services := schema.GroupResource{Resource: "services"}
	widgets := schema.GroupResource{Group: "example.com", Resource: "widgets"}
	tests := []struct {
		gr   schema.GroupResource
		name string
		ok   bool
	}{
		{pods, "web-1", true},
		{pods, "web.1", true},
		{pods, "1web", true},
		{widgets, "a.b-c", true},
		{services, "1web", false},
		{services, "web.1", false},
		{pods, "Web", false},
		{pods, "a`b", false},
		{pods, `a"b`, false},
		{pods, "a\nb", false},
		{pods, "", false},
		{pods, strings.Repeat("a", 254), false},
		{pods, "\xff", false},
	}
	for _, tc := range tests {
		if err := ValidateObjectName(tc.gr, tc.name); (err == nil) != tc.ok {
			t.Errorf("%s %q: %v, want ok=%v", tc.gr, tc.name, err, tc.ok)
		}
	}
	for ns, ok := range map[string]bool{"": true, "shop": true, "shop.a": false, "Shop": false, "a'b": false} {
		if err := ValidateNamespace(ns); (err == nil) != ok {
			t.Errorf("namespace %q: %v, want ok=%v", ns, err, ok)
		}
	}
	if err := ValidateSelector(k8slabels.SelectorFromValidatedSet(k8slabels.Set{"__name__": "up"}), 0); err == nil {
		t.Error("__name__ selector accepted")
	}
	if n := EscapedBytes([]string{"a.b", "c"}); n != len(`a\.b|c`) {
		t.Errorf("EscapedBytes %d", n)
	}
}

func TestInjectWarning(t *testing.T) {
	cfg, err := ParseConfig([]byte(`metrics:
- name: ratio
  resource: pods
  query: sum by (namespace, pod) (rate(a_total[1m])) / on () group_left sum(rate(b_total[1m]))
  inject: [a_total]
- name: all
  resource: pods
  query: sum by (namespace, pod) (rate(a_total[1m]))
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Warnings) != 1 || !strings.Contains(rules.Warnings[0], "rule 0 (ratio): inject lists a_total, so b_total get no namespace") {
		t.Errorf("warnings %q", rules.Warnings)
	}
}
