package wake

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

func policyAnnotations(kv ...string) map[string]string {
	a := map[string]string{AnnotationEnabled: "true"}
	for i := 0; i+1 < len(kv); i += 2 {
		a[AnnotationPrefix+kv[i]] = kv[i+1]
	}
	return a
}

func TestParsePolicyDisabled(t *testing.T) {
	for _, a := range []map[string]string{
		nil,
		{},
		{AnnotationEnabled: "false"},
		{AnnotationEnabled: "True"},
		{AnnotationEnabled: "yes"},
		{AnnotationEnabled: ""},
		// Not opted in: invalid values are not even read.
		{AnnotationIdleAfter: "5 minutes"},
	} {
		p, on, err := ParsePolicy(a)
		if on || err != nil || p.IdleAfter != 0 {
			t.Errorf("ParsePolicy(%v) = %+v, %v, %v; want zero, false, nil", a, p, on, err)
		}
	}
}

func TestParsePolicyDefaults(t *testing.T) {
	p, on, err := ParsePolicy(policyAnnotations())
	if err != nil || !on {
		t.Fatalf("ParsePolicy = %v, %v", on, err)
	}
	if p.IdleAfter != DefaultIdleAfter || p.Threshold != 0 || p.Signal != nil || p.KeepAwake != nil || p.Paused {
		t.Errorf("defaults = %+v", p)
	}
}

func TestParsePolicyFull(t *testing.T) {
	p, on, err := ParsePolicy(policyAnnotations(
		KeyIdleAfter, "90s",
		KeyActivationThreshold, "500m",
		KeyActivationMetric, "external:queue_messages_ready?queue=orders,env!=dev",
		KeyKeepAwake, "Mon-Fri 09:00-17:00 Europe/Paris floor=2; Sat,Sun 10:00-12:00 UTC;",
		KeyPaused, "true",
		KeySleepingReplicas, "not a number: state keys are not policy",
	))
	if err != nil || !on {
		t.Fatalf("ParsePolicy = %v, %v", on, err)
	}
	if p.IdleAfter != 90*time.Second {
		t.Errorf("IdleAfter = %v", p.IdleAfter)
	}
	if p.Threshold != 0.5 {
		t.Errorf("Threshold = %v", p.Threshold)
	}
	if p.Signal == nil || p.Signal.Kind != SignalExternal || p.Signal.Metric != "queue_messages_ready" ||
		!p.Signal.Selector.Matches(labels.Set{"queue": "orders", "env": "prod"}) || p.Signal.Selector.Matches(labels.Set{"queue": "orders", "env": "dev"}) {
		t.Errorf("Signal = %+v", p.Signal)
	}
	if len(p.KeepAwake) != 2 || p.KeepAwake[0].String() != "Mon-Fri 09:00-17:00 Europe/Paris floor=2" || p.KeepAwake[1].String() != "Sat,Sun 10:00-12:00 UTC" {
		t.Errorf("KeepAwake = %v", p.KeepAwake)
	}
	if !p.Paused {
		t.Error("Paused = false")
	}
}

func TestParsePolicyValues(t *testing.T) {
	tests := []struct {
		key, value string
		check      func(Policy) bool
	}{
		{KeyIdleAfter, "10s", func(p Policy) bool { return p.IdleAfter == 10*time.Second }},
		{KeyIdleAfter, "1h30m", func(p Policy) bool { return p.IdleAfter == 90*time.Minute }},
		{KeyActivationThreshold, "0", func(p Policy) bool { return p.Threshold == 0 }},
		{KeyActivationThreshold, "10", func(p Policy) bool { return p.Threshold == 10 }},
		{KeyActivationThreshold, "1k", func(p Policy) bool { return p.Threshold == 1000 }},
		{KeyActivationThreshold, "-2", func(p Policy) bool { return p.Threshold == -2 }},
		{KeyPaused, "false", func(p Policy) bool { return !p.Paused }},
		{KeyPaused, "", func(p Policy) bool { return !p.Paused }},
		{KeyKeepAwake, "", func(p Policy) bool { return len(p.KeepAwake) == 0 }},
		{KeyKeepAwake, " ; ", func(p Policy) bool { return len(p.KeepAwake) == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			p, _, err := ParsePolicy(policyAnnotations(tt.key, tt.value))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(p) {
				t.Errorf("unexpected policy %+v", p)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		key, value string
		want       string // exact error text
	}{
		{KeyIdleAfter, "5 minutes", `scale-to-zero.promql-adapter.io/idle-after: "5 minutes": time: invalid duration`},
		{KeyIdleAfter, "", `scale-to-zero.promql-adapter.io/idle-after: "": time: invalid duration`},
		{KeyIdleAfter, "9s", `scale-to-zero.promql-adapter.io/idle-after: "9s": must be at least 10s`},
		{KeyIdleAfter, "-5m", `scale-to-zero.promql-adapter.io/idle-after: "-5m": must be at least 10s`},
		{KeyActivationThreshold, "ten", `scale-to-zero.promql-adapter.io/activation-threshold: "ten": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`},
		{KeyActivationMetric, "queue_messages_ready", `scale-to-zero.promql-adapter.io/activation-metric: "queue_messages_ready": want external:<metric>[?<labelSelector>] or object:<resource>/<name>/<metric>[?<labelSelector>]`},
		{KeyActivationMetric, "pods:foo", `scale-to-zero.promql-adapter.io/activation-metric: "pods:foo": unknown kind "pods": want external or object`},
		{KeyActivationMetric, "external:", `scale-to-zero.promql-adapter.io/activation-metric: "external:": empty metric name`},
		{KeyActivationMetric, "external:a b", `scale-to-zero.promql-adapter.io/activation-metric: "external:a b": metric name "a b": must not contain '/', '?', '%' or spaces`},
		{KeyActivationMetric, "external:q?queue in (orders", `scale-to-zero.promql-adapter.io/activation-metric: "external:q?queue in (orders": label selector "queue in (orders": `},
		{KeyActivationMetric, "object:services/web", `scale-to-zero.promql-adapter.io/activation-metric: "object:services/web": want object:<resource>/<name>/<metric>[?<labelSelector>]`},
		{KeyActivationMetric, "object:Services/web/rps", `scale-to-zero.promql-adapter.io/activation-metric: "object:Services/web/rps": resource "Services": a lowercase RFC 1123 subdomain`},
		{KeyActivationMetric, "object:services/Web_1/rps", `scale-to-zero.promql-adapter.io/activation-metric: "object:services/Web_1/rps": object name "Web_1": a lowercase RFC 1123 subdomain`},
		{KeyActivationMetric, "object:services/web/", `scale-to-zero.promql-adapter.io/activation-metric: "object:services/web/": empty metric name`},
		{KeyKeepAwake, "Mon-Fri 09:00-17:00 Mars/Olympus", `scale-to-zero.promql-adapter.io/keep-awake: "Mon-Fri 09:00-17:00 Mars/Olympus": time zone "Mars/Olympus": unknown time zone Mars/Olympus`},
		{KeyKeepAwake, "Mon-Fri 09:00-17:00 UTC; Sat 10:00 UTC", `scale-to-zero.promql-adapter.io/keep-awake: "Sat 10:00 UTC": times "10:00": want <HH:MM>-<HH:MM>`},
		{KeyKeepAwake, "Mon-Fri 09:00-17:00", `scale-to-zero.promql-adapter.io/keep-awake: "Mon-Fri 09:00-17:00": want <days> <HH:MM>-<HH:MM> <IANA time zone> [floor=N]`},
		{KeyKeepAwake, "Weekdays 09:00-17:00 UTC", `scale-to-zero.promql-adapter.io/keep-awake: "Weekdays 09:00-17:00 UTC": days "Weekdays": unknown day "Weekdays": want Mon, Tue, Wed, Thu, Fri, Sat, Sun or *`},
		{KeyKeepAwake, "Mon 09:00-17:00 UTC floor=0", `scale-to-zero.promql-adapter.io/keep-awake: "Mon 09:00-17:00 UTC floor=0": floor 0: must be at least 1`},
		{KeyPaused, "yes", `scale-to-zero.promql-adapter.io/paused: "yes": want "true" or "false"`},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			p, on, err := ParsePolicy(policyAnnotations(tt.key, tt.value))
			if !on {
				t.Error("enabled = false; an opted-in HPA with a bad policy must still report enabled")
			}
			if err == nil {
				t.Fatalf("no error; policy %+v", p)
			}
			if got := err.Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("error\n got %s\nwant %s", got, tt.want)
			}
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Key != AnnotationPrefix+tt.key {
				t.Errorf("error %v is not an *AnnotationError for %s", err, tt.key)
			}
		})
	}
}

func TestParsePolicyReportsEveryBadAnnotation(t *testing.T) {
	_, on, err := ParsePolicy(policyAnnotations(KeyIdleAfter, "soon", KeyPaused, "maybe", KeyKeepAwake, "Mon 09:00-17:00 UTC;Tue 25:00-26:00 UTC"))
	if !on || err == nil {
		t.Fatalf("ParsePolicy = %v, %v", on, err)
	}
	for _, want := range []string{AnnotationIdleAfter + `: "soon"`, AnnotationPaused + `: "maybe"`, AnnotationKeepAwake + `: "Tue 25:00-26:00 UTC"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "Mon 09:00-17:00 UTC") {
		t.Errorf("error %q blames the valid window", err)
	}
}

func TestAnnotationErrorUnwrap(t *testing.T) {
	_, _, err := ParsePolicy(policyAnnotations(KeyIdleAfter, "9s"))
	var ae *AnnotationError
	if !errors.As(err, &ae) || ae.Value != "9s" || ae.Unwrap() == nil {
		t.Fatalf("errors.As(%v) = %+v", err, ae)
	}
	// The short duration message still carries time.ParseDuration's cause.
	_, _, err = ParsePolicy(policyAnnotations(KeyIdleAfter, "5 minutes"))
	if !errors.As(err, &ae) || !strings.Contains(errors.Unwrap(ae.Err).Error(), `unknown unit " minutes"`) {
		t.Errorf("cause of %v lost", err)
	}
	if got := (&AnnotationError{Key: "k", Value: "v"}).Error(); got != `k: "v": invalid value` {
		t.Errorf("Error() without cause = %q", got)
	}
}

func TestParseSignalRef(t *testing.T) {
	tests := []struct {
		in   string
		want SignalRef
		sel  string
	}{
		{"external:queue_messages_ready?queue=orders", SignalRef{Kind: SignalExternal, Metric: "queue_messages_ready"}, "queue=orders"},
		{"external:queue_messages_ready", SignalRef{Kind: SignalExternal, Metric: "queue_messages_ready"}, ""},
		{"external:queue_messages_ready?", SignalRef{Kind: SignalExternal, Metric: "queue_messages_ready"}, ""},
		{"object:services/web/service_requests_per_second", SignalRef{Kind: SignalObject, Resource: "services", Name: "web", Metric: "service_requests_per_second"}, ""},
		{"object:deployments.apps/api-v2/http_inflight?app.kubernetes.io/name=api,code!=500", SignalRef{Kind: SignalObject, Resource: "deployments.apps", Name: "api-v2", Metric: "http_inflight"}, "app.kubernetes.io/name=api,code!=500"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSignalRef(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != tt.want.Kind || got.Metric != tt.want.Metric || got.Resource != tt.want.Resource || got.Name != tt.want.Name {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.Selector == nil {
				t.Fatal("nil Selector; want labels.Everything() when none is given")
			}
			if s := got.Selector.String(); s != tt.sel {
				t.Errorf("Selector = %q, want %q", s, tt.sel)
			}
			again, err := ParseSignalRef(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("round trip of %q: %v, %v", got.String(), again, err)
			}
		})
	}
}

func TestStateAnnotationsRoundTrip(t *testing.T) {
	since := time.Date(2026, 3, 29, 1, 2, 3, 0, time.UTC)
	tests := []struct {
		st   State
		want map[string]string
	}{
		{State{}, map[string]string{AnnotationSleepingReplicas: "", AnnotationIdleSince: ""}},
		{State{IdleSince: since}, map[string]string{AnnotationSleepingReplicas: "", AnnotationIdleSince: "2026-03-29T01:02:03Z"}},
		{State{Sleeping: true, SleepingReplicas: 7}, map[string]string{AnnotationSleepingReplicas: "7", AnnotationIdleSince: ""}},
	}
	for _, tt := range tests {
		got := tt.st.Annotations()
		if len(got) != len(tt.want) {
			t.Errorf("%+v.Annotations() = %v, want %v", tt.st, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("%+v.Annotations()[%s] = %q, want %q", tt.st, k, got[k], v)
			}
		}
		// Apply the patch the way a controller would: "" deletes.
		hpa := map[string]string{AnnotationEnabled: "true", AnnotationSleepingReplicas: "3", AnnotationIdleSince: "2020-01-01T00:00:00Z"}
		for k, v := range got {
			if v == "" {
				delete(hpa, k)
			} else {
				hpa[k] = v
			}
		}
		back, err := StateFromAnnotations(hpa)
		if err != nil {
			t.Fatal(err)
		}
		if !back.IdleSince.Equal(tt.st.IdleSince) || back.Sleeping != tt.st.Sleeping || back.SleepingReplicas != tt.st.SleepingReplicas {
			t.Errorf("round trip of %+v = %+v", tt.st, back)
		}
	}
	// Another zone is written in UTC; sub-second precision is dropped by RFC3339.
	paris := time.FixedZone("CEST", 2*3600)
	if got := (State{IdleSince: time.Date(2026, 7, 1, 12, 0, 0, 5e8, paris)}).Annotations()[AnnotationIdleSince]; got != "2026-07-01T10:00:00Z" {
		t.Errorf("IdleSince annotation = %q", got)
	}
}

func TestStateFromAnnotations(t *testing.T) {
	st, err := StateFromAnnotations(nil)
	if err != nil || st != (State{}) {
		t.Errorf("nil annotations: %+v, %v", st, err)
	}
	st, err = StateFromAnnotations(map[string]string{AnnotationSleepingReplicas: "0", AnnotationIdleSince: "2026-01-01T10:00:00.5+01:00"})
	if err != nil || !st.Sleeping || st.SleepingReplicas != 0 || !st.IdleSince.Equal(time.Date(2026, 1, 1, 9, 0, 0, 5e8, time.UTC)) {
		t.Errorf("got %+v, %v", st, err)
	}
	tests := []struct {
		a    map[string]string
		want string
	}{
		{map[string]string{AnnotationSleepingReplicas: "three"}, `scale-to-zero.promql-adapter.io/sleeping-replicas: "three": strconv.ParseInt: parsing`},
		{map[string]string{AnnotationSleepingReplicas: "-1"}, `scale-to-zero.promql-adapter.io/sleeping-replicas: "-1": must not be negative`},
		{map[string]string{AnnotationSleepingReplicas: "99999999999"}, `scale-to-zero.promql-adapter.io/sleeping-replicas: "99999999999": strconv.ParseInt`},
		{map[string]string{AnnotationIdleSince: "yesterday"}, `scale-to-zero.promql-adapter.io/idle-since: "yesterday": parsing time`},
		{map[string]string{AnnotationIdleSince: "2026-01-01 10:00:00"}, `scale-to-zero.promql-adapter.io/idle-since: "2026-01-01 10:00:00": parsing time`},
	}
	for _, tt := range tests {
		_, err := StateFromAnnotations(tt.a)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("StateFromAnnotations(%v) error = %v, want prefix %q", tt.a, err, tt.want)
		}
	}
}
