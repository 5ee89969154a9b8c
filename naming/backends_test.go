package naming

import (
	"strings"
	"testing"
	"time"
)

// TestBackendErrorsNameBackendOrRuleAndField: every refused backend declaration names the backend
// and the field, and a rule naming an undeclared backend names the rule, the field backend and
// the declared backends.
func TestBackendErrorsNameBackendOrRuleAndField(t *testing.T) {
	rule := "- name: m\n  resource: pods\n  query: sum by (namespace, pod) (x)\n"
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"no name", "backends:\n- url: http://b:9090\nmetrics:\n" + rule, []string{"backend 0:", "field name", "required"}},
		{"reserved name", "backends:\n- {name: default, url: http://b:9090}\nmetrics:\n" + rule, []string{"backend 0 (default)", "field name", "--prometheus-*"}},
		{"bad name", "backends:\n- {name: B/1, url: http://b:9090}\nmetrics:\n" + rule, []string{"backend 0 (B/1)", "field name"}},
		{"duplicate", "backends:\n- {name: b, url: http://b:9090}\n- {name: b, url: http://c:9090}\nmetrics:\n" + rule, []string{"backend 1 (b)", "field name", "already declared by backend 0"}},
		{"no url", "backends:\n- {name: b}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field url", "required"}},
		{"url scheme", "backends:\n- {name: b, url: 'ftp://b'}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field url", "http://"}},
		{"url without host", "backends:\n- {name: b, url: 'http:///api'}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field url", "no host"}},
		{"url with credentials", "backends:\n- {name: b, url: 'http://u:secret@b:9090'}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field url", "clientConfig"}},
		{"timeout", "backends:\n- {name: b, url: 'http://b:9090', timeout: 5 s}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field timeout"}},
		{"zero timeout", "backends:\n- {name: b, url: 'http://b:9090', timeout: 0s}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field timeout", "positive"}},
		{"header name", "backends:\n- {name: b, url: 'http://b:9090', headers: {'X Org': a}}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field headers", `"X Org"`}},
		{"header value", "backends:\n- {name: b, url: 'http://b:9090', headers: {X-Org: \"a\\nb\"}}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field headers", "X-Org"}},
		{"negative inflight", "backends:\n- {name: b, url: 'http://b:9090', maxInFlight: -1}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field maxInFlight"}},
		{"negative queue", "backends:\n- {name: b, url: 'http://b:9090', maxQueue: -2}\nmetrics:\n" + rule, []string{"backend 0 (b)", "field maxQueue"}},
		{"unknown field", "backends:\n- {name: b, url: 'http://b:9090', tenant: a}\nmetrics:\n" + rule, []string{"backends:", `unknown field "tenant"`}},
		{"undeclared", "backends:\n- {name: b, url: 'http://b:9090'}\n- {name: c, url: 'http://c:9090'}\nmetrics:\n" + rule + "  backend: x\n", []string{"rule 0 (m)", "field backend", `"x" is not declared`, "declared: b, c"}},
		{"none declared", "metrics:\n" + rule + "  backend: x\n", []string{"rule 0 (m)", "field backend", "declares no backends"}},
		{"undeclared discover", "metrics:\n- resource: pods\n  query: sum by (namespace, pod) (__series__)\n  discover: {series: '{__name__=~\"a_.+\"}'}\n  backend: x\n", []string{"rule 0:", "field backend"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				_, err = Compile(cfg, BuiltinResources())
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestBackendsCompile: declared backends keep their settings (unset limits and timeout stay unset,
// for the flags' values), and each metric and discovery rule carries its backend; "default" and
// an empty backend both mean the default one.
func TestBackendsCompile(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
backends:
- name: b
  url: https://thanos.example:10902
  timeout: 2s
  clientConfig: b-http.yaml
  headers: {X-Scope-OrgID: team-a}
  maxInFlight: 0
- name: c.eu-1
  url: http://c:9090
metrics:
- {name: on_default, resource: pods, query: "sum by (namespace, pod) (x)"}
- {name: on_default_named, resource: services, backend: default, query: "sum by (namespace, service) (x)"}
- {name: on_b, resource: external, backend: b, query: "sum(x)"}
- resource: pods
  backend: c.eu-1
  query: sum by (namespace, pod) (__series__)
  discover: {series: '{__name__=~"app_.+"}'}
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Compile(cfg, BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Backends) != 2 {
		t.Fatalf("%d backends, want 2", len(rules.Backends))
	}
	b, c := rules.Backends[0], rules.Backends[1]
	if b.Name != "b" || b.URL != "https://thanos.example:10902" || b.Timeout != 2*time.Second || b.ClientConfig != "b-http.yaml" ||
		b.Headers["X-Scope-OrgID"] != "team-a" || b.MaxInFlight == nil || *b.MaxInFlight != 0 || b.MaxQueue != nil {
		t.Errorf("backend b: %+v", b)
	}
	if c.Name != "c.eu-1" || c.Timeout != 0 || c.MaxInFlight != nil || c.MaxQueue != nil {
		t.Errorf("backend c.eu-1: %+v", c)
	}
	want := map[string]string{"on_default": "", "on_default_named": "", "on_b": "b"}
	for _, m := range rules.Metrics {
		if m.Backend != want[m.Name] {
			t.Errorf("%s: backend %q, want %q", m.Name, m.Backend, want[m.Name])
		}
	}
	if got := rules.Templates[0].Backend(); got != "c.eu-1" {
		t.Errorf("discovery rule backend %q, want c.eu-1", got)
	}
	if m, ok := rules.Templates[0].Expand("app_x"); !ok || m.Backend != "c.eu-1" {
		t.Errorf("discovered metric %v, want backend c.eu-1", m)
	}
}
