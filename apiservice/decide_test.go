package apiservice

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"
)

var ours = Service{Namespace: "custom-metrics", Name: "promql-adapter", Port: 443}

func apiSvc(ns, name string, port *int32, ca string, insecure bool) *apiregv1.APIService {
	a := &apiregv1.APIService{ObjectMeta: metav1.ObjectMeta{Name: "v1beta1.external.metrics.k8s.io", ResourceVersion: "7"},
		Spec: apiregv1.APIServiceSpec{Group: "external.metrics.k8s.io", Version: "v1beta1", GroupPriorityMinimum: 100, VersionPriority: 100,
			InsecureSkipTLSVerify: insecure}}
	if name != "" {
		a.Spec.Service = &apiregv1.ServiceReference{Namespace: ns, Name: name, Port: port}
	}
	if ca != "" {
		a.Spec.CABundle = []byte(ca)
	}
	return a
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cur        *apiregv1.APIService
		ca         []byte
		held       bool
		reason     string // substring
		changes    string // joined
		wantUpdate bool
	}{
		{"absent: not created", nil, []byte("CA"), false, "absent", "", false},
		{"ours with our CA", apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](443), "CA", false), []byte("CA"), true, "", "", false},
		{"ours, port left to the default 443", apiSvc("custom-metrics", "promql-adapter", nil, "CA", false), []byte("CA"), true, "", "", false},
		{"ours, CA not ours to assert", apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](443), "KEDA", false), nil, true, "", "", false},
		{"KEDA's chart upgraded it", apiSvc("keda", "keda-operator-metrics-apiserver", ptr.To[int32](443), "CA", false), []byte("CA"), false,
			"points at keda/keda-operator-metrics-apiserver:443", "service keda/keda-operator-metrics-apiserver:443 -> custom-metrics/promql-adapter:443", true},
		{"KEDA's operator rotated the caBundle", apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](443), "KEDA", false), []byte("CA"), false,
			"caBundle differs", "caBundle set to our CA", true},
		{"rendered without caBundle (tls.mode controller)", apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](443), "", false), []byte("CA"), false,
			"caBundle empty", "caBundle set to our CA", true},
		{"insecure, CA to assert", apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](443), "", true), []byte("CA"), false,
			"skips TLS verification", "insecureSkipTLSVerify cleared, caBundle set to our CA", true},
		{"insecure, no CA to assert: left", apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](443), "", true), nil, true, "", "", false},
		{"other port", apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](6443), "CA", false), []byte("CA"), false, "points at custom-metrics/promql-adapter:6443", "service", true},
		{"local APIService (no service)", apiSvc("", "", nil, "", false), nil, false, "points at local", "service local (no service) -> ", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.cur, ours, tc.ca)
			if d.Held != tc.held || !strings.Contains(d.Reason, tc.reason) || (d.Update != nil) != tc.wantUpdate {
				t.Fatalf("Decide: held %v reason %q update %v; want held %v reason ~%q update %v", d.Held, d.Reason, d.Update != nil, tc.held, tc.reason, tc.wantUpdate)
			}
			if got := strings.Join(d.Changes, ", "); !strings.HasPrefix(got, tc.changes) {
				t.Errorf("changes %q, want %q", got, tc.changes)
			}
			if d.Update == nil {
				return
			}
			u := d.Update
			if s := u.Spec.Service; s == nil || s.Namespace != ours.Namespace || s.Name != ours.Name || *s.Port != 443 {
				t.Errorf("updated service %+v", s)
			}
			if tc.ca != nil && (string(u.Spec.CABundle) != string(tc.ca) || u.Spec.InsecureSkipTLSVerify) {
				t.Errorf("updated caBundle %q insecure %v", u.Spec.CABundle, u.Spec.InsecureSkipTLSVerify)
			}
			if tc.ca == nil && tc.cur != nil && string(u.Spec.CABundle) != string(tc.cur.Spec.CABundle) {
				t.Errorf("caBundle changed though none is asserted")
			}
			// Nothing else changes: group, version, priorities, resourceVersion (optimistic concurrency).
			if u.Spec.Group != tc.cur.Spec.Group || u.Spec.VersionPriority != tc.cur.Spec.VersionPriority || u.ResourceVersion != tc.cur.ResourceVersion {
				t.Errorf("update changed more than service and caBundle: %+v", u)
			}
			if Decide(u, ours, tc.ca).Update != nil {
				t.Error("the update is not held by the next decision")
			}
		})
	}
}

func TestParseServiceAndName(t *testing.T) {
	if s, err := ParseService("custom-metrics/promql-adapter:443"); err != nil || s != ours {
		t.Errorf("ParseService: %v %v", s, err)
	}
	for _, bad := range []string{"promql-adapter:443", "custom-metrics/promql-adapter", "ns/name:0", "ns/name:x", "/name:1"} {
		if _, err := ParseService(bad); err == nil || !strings.Contains(err.Error(), "--apiservice-service") {
			t.Errorf("ParseService(%q): %v, want an error naming the flag", bad, err)
		}
	}
	if v, g, err := ParseName("v1beta1.external.metrics.k8s.io"); err != nil || v != "v1beta1" || g != "external.metrics.k8s.io" {
		t.Errorf("ParseName: %s %s %v", v, g, err)
	}
	for _, bad := range []string{"external.metrics.k8s.io", "v1beta1", "v1beta1.metrics"} {
		if _, _, err := ParseName(bad); err == nil || !strings.Contains(err.Error(), "--apiservice") {
			t.Errorf("ParseName(%q): %v, want an error naming the flag", bad, err)
		}
	}
}
