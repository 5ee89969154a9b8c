package naming

import (
	"fmt"
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

// TestValidateLongValues: a long hostile value is refused with a message that quotes only its start.
func TestValidateLongValues(t *testing.T) {
	long := strings.Repeat("a", 64<<10)
	for _, gr := range []schema.GroupResource{{Resource: "pods"}, {Resource: "services"}, {Resource: "namespaces"}} {
		err := ValidateObjectName(gr, long)
		if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%s: %d-byte message %.300q", gr, len(fmt.Sprint(err)), fmt.Sprint(err))
		}
	}
	err := ValidateNamespace(long + "\n")
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "(65537 bytes)") {
		t.Errorf("namespace: %d-byte message %.300q", len(fmt.Sprint(err)), fmt.Sprint(err))
	}
	if err := ValidateObjectName(schema.GroupResource{Resource: "pods"}, strings.Repeat("a", 253)); err != nil {
		t.Errorf("253-byte pod name refused: %v", err)
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
