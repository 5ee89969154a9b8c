package forward

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	ptestutil "github.com/promql-adapter/promql-adapter/internal/testutil"
)

// ours serves external ours_ext and clash_ext, and custom pods/ours_custom.
type ours struct{}

func (ours) ListAllMetrics() []provider.CustomMetricInfo {
	return []provider.CustomMetricInfo{{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "ours_custom"}}
}

func (ours) DiscoveryPending() bool { return false }

func (ours) ListAllExternalMetrics() []provider.ExternalMetricInfo {
	return []provider.ExternalMetricInfo{{Metric: "ours_ext"}, {Metric: "clash_ext"}}
}

// fakeUpstream is an adapter answering discovery from its lists and every metric request with
// the status and body its answer function gives; it records what it was asked.
type fakeUpstream struct {
	*httptest.Server
	external []string
	custom   []metav1.APIResource
	answer   func(r *http.Request) (int, string)
	header   http.Header // more headers of every metric answer

	mu   sync.Mutex
	seen []*http.Request
}

func newFakeUpstream(t testing.TB, external []string, custom []metav1.APIResource) *fakeUpstream {
	u := &fakeUpstream{external: external, custom: custom, answer: func(r *http.Request) (int, string) {
		return 200, `{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},"items":[{"metricName":"from-upstream","value":"7"}]}`
	}}
	u.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var list []metav1.APIResource
		switch r.URL.Path {
		case "/apis/external.metrics.k8s.io/v1beta1":
			for _, m := range u.external {
				list = append(list, metav1.APIResource{Name: m, Namespaced: true, Kind: "ExternalMetricValueList", Verbs: []string{"get"}})
			}
		case "/apis/custom.metrics.k8s.io/v1beta2":
			list = u.custom
		default:
			u.mu.Lock()
			u.seen = append(u.seen, r.Clone(context.Background()))
			u.mu.Unlock()
			code, body := u.answer(r)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Audit-Id", "upstream-audit-id")
			for k, v := range u.header {
				w.Header()[k] = v
			}
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
			return
		}
		_ = json.NewEncoder(w).Encode(metav1.APIResourceList{GroupVersion: "x", APIResources: list})
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *fakeUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *fakeUpstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

// caFile writes the upstream's serving certificate as a CA bundle.
func caFile(t *testing.T, s *httptest.Server) string {
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func spec(t *testing.T, api string, s string) Spec {
	t.Helper()
	sp, err := ParseSpec(api, s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

var kube = &rest.Config{Host: "https://kube-apiserver.invalid", BearerToken: "our-sa-token"}

// inner stands for our API handler.
var inner = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(299)
	_, _ = io.WriteString(w, "ours "+r.URL.Path)
})

func get(h http.Handler, path string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	req = req.WithContext(request.WithUser(req.Context(), &user.DefaultInfo{Name: "system:serviceaccount:kube-system:horizontal-pod-autoscaler", Groups: []string{"system:serviceaccounts", "system:authenticated"}, Extra: map[string][]string{"authentication.kubernetes.io/pod-name": {"hpa-1"}}}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRouting(t *testing.T) {
	up := newFakeUpstream(t, []string{"keda_ext", "clash_ext"}, []metav1.APIResource{
		{Name: "pods/keda_custom", Namespaced: true},
		{Name: "deployments.apps/keda_dep", Namespaced: true},
		{Name: "namespaces/ns_metric"},
		{Name: "nodes/node_metric"},
		{Name: "pods/ours_custom", Namespaced: true},
		{Name: "pods"}, // not a metric
	})
	ca := caFile(t, up.Server)
	reg := prometheus.NewRegistry()
	f, err := New(ours{}, []Spec{
		spec(t, External, up.URL+",name=keda,ca-file="+ca),
		spec(t, Custom, up.URL+",name=keda,ca-file="+ca),
	}, kube, 10*time.Second, reg)
	if err != nil {
		t.Fatal(err)
	}
	f.RefreshAll(context.Background())
	h := f.Wrap(inner)
	for _, c := range []struct {
		name, path string
		forwarded  bool
		upCode     int
		upBody     string
	}{
		{name: "ours external", path: "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/ours_ext"},
		{name: "upstream external keeps path and query", path: "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext?labelSelector=scaledobject.keda.sh%2Fname%3Dweb", forwarded: true, upCode: 200, upBody: `{"kind":"ExternalMetricValueList","items":[]}`},
		{name: "clash external is ours", path: "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/clash_ext"},
		{name: "unknown external gets our answer", path: "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/nobody"},
		{name: "upstream 404 unchanged", path: "/apis/external.metrics.k8s.io/v1beta1/namespaces/other/keda_ext", forwarded: true, upCode: 404, upBody: `{"kind":"Status","code":404,"message":"no ScaledObject in other"}`},
		{name: "upstream 500 unchanged", path: "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext", forwarded: true, upCode: 500, upBody: "scaler failed\n"},
		{name: "ours custom", path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/ours_custom"},
		{name: "upstream pods", path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/keda_custom?labelSelector=app%3Dweb", forwarded: true, upCode: 200, upBody: `{"kind":"MetricValueList"}`},
		{name: "upstream v1beta1 path kept", path: "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/pods/web-1/keda_custom", forwarded: true, upCode: 200, upBody: `{"kind":"MetricValueList"}`},
		{name: "resource without group", path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments/web/keda_dep", forwarded: true, upCode: 200, upBody: "dep"},
		{name: "resource with group", path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/web/keda_dep", forwarded: true, upCode: 200, upBody: "dep"},
		{name: "namespace metric", path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/ns_metric", forwarded: true, upCode: 200, upBody: "ns"},
		{name: "cluster-scoped", path: "/apis/custom.metrics.k8s.io/v1beta2/nodes/node-1/node_metric", forwarded: true, upCode: 200, upBody: "node"},
		{name: "wrong resource is not forwarded", path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/web/keda_custom"},
		{name: "clash custom is ours", path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/ours_custom"},
		{name: "discovery is ours", path: "/apis/external.metrics.k8s.io/v1beta1"},
		{name: "another group is ours", path: "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/keda_ext"},
	} {
		t.Run(c.name, func(t *testing.T) {
			up.answer = func(*http.Request) (int, string) { return c.upCode, c.upBody }
			before := len(up.seen)
			rec := get(h, c.path, http.Header{"Authorization": {"Bearer caller-token"}, "X-Remote-User": {"mallory"}, "Accept": {"application/json"}})
			if !c.forwarded {
				if rec.Code != 299 || len(up.seen) != before {
					t.Fatalf("want ours, got %d %q (upstream asked %d times)", rec.Code, rec.Body.String(), len(up.seen)-before)
				}
				return
			}
			if rec.Code != c.upCode || rec.Body.String() != c.upBody {
				t.Fatalf("want the upstream's %d %q unchanged, got %d %q", c.upCode, c.upBody, rec.Code, rec.Body.String())
			}
			r := up.last()
			if got := r.URL.RequestURI(); got != c.path {
				t.Errorf("upstream asked %s, want %s", got, c.path)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer our-sa-token" {
				t.Errorf("upstream saw Authorization %q, want our ServiceAccount token", got)
			}
			if r.Header.Get("X-Remote-User") != "" || r.Header.Get("Impersonate-User") != "" {
				t.Errorf("the caller's identity headers crossed over: %v", r.Header)
			}
			if r.Header.Get("Accept") != "application/json" {
				t.Errorf("Accept not kept: %v", r.Header)
			}
			if ids := rec.Header().Values("Audit-Id"); len(ids) != 0 {
				t.Errorf("upstream's Audit-Id passed through: %v", ids)
			}
		})
	}
	if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues(External, "keda", "200")); got != 1 {
		t.Errorf("forwarded external 200: %v", got)
	}
	if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues(External, "keda", "404")); got != 1 {
		t.Errorf("forwarded external 404: %v", got)
	}
	if n := testutil.CollectAndCount(f.metrics.latency); n != 2 {
		t.Errorf("latency series: %d, want one per API", n)
	}
}

// TestUpstreamDownOrSlow: an upstream that is down or does not answer gets a 503 naming it within
// the timeout; our metrics keep being answered meanwhile.
func TestUpstreamDownOrSlow(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := newFakeUpstream(t, []string{"slow_ext"}, nil)
	slow.answer = func(r *http.Request) (int, string) {
		select {
		case <-r.Context().Done():
		case <-release:
		case <-time.After(time.Minute):
		}
		return 200, "late"
	}
	down := newFakeUpstream(t, []string{"down_ext"}, nil)
	f, err := New(ours{}, []Spec{
		spec(t, External, slow.URL+",name=slow,insecure-skip-tls-verify,auth=none"),
		spec(t, External, down.URL+",name=down,insecure-skip-tls-verify,auth=none"),
	}, nil, 300*time.Millisecond, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.RefreshAll(context.Background())
	down.Close()
	h := f.Wrap(inner)
	for _, c := range []struct{ metric, upstream, why string }{
		{"slow_ext", "slow", "no answer within 300ms"},
		{"down_ext", "down", "connect"},
	} {
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() { done <- get(h, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/"+c.metric, nil) }()
		// ours is answered while the upstream is being waited for
		if rec := get(h, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/ours_ext", nil); rec.Code != 299 {
			t.Errorf("ours while %s: %d", c.upstream, rec.Code)
		}
		select {
		case rec := <-done:
			var st metav1.Status
			_ = json.Unmarshal(rec.Body.Bytes(), &st)
			if rec.Code != 503 || st.Code != 503 || !strings.Contains(st.Message, "upstream "+c.upstream) || !strings.Contains(st.Message, c.why) || rec.Header().Get("Retry-After") != "" {
				t.Errorf("%s: want 503 naming upstream %s (%s) without Retry-After (client-go would retry it 10 times), got %d %v %s", c.metric, c.upstream, c.why, rec.Code, rec.Header(), rec.Body.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no answer: the forwarding timeout did not bound the request", c.metric)
		}
		if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues(External, c.upstream, "503")); got != 1 {
			t.Errorf("%s 503 count: %v", c.upstream, got)
		}
	}
	// A failed list keeps the last one: the metric keeps its 503 naming the upstream, not a 404.
	f.RefreshAll(context.Background())
	if rec := get(h, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/down_ext", nil); rec.Code != 503 || !strings.Contains(rec.Body.String(), "upstream down") {
		t.Errorf("after a failed list: %d %s", rec.Code, rec.Body.String())
	}
	if got := testutil.ToFloat64(f.metrics.up.WithLabelValues(External, "down")); got != 0 {
		t.Errorf("down's up gauge: %v", got)
	}
	if got := testutil.ToFloat64(f.metrics.up.WithLabelValues(External, "slow")); got != 1 {
		t.Errorf("slow's up gauge: %v", got)
	}
}

// TestNotListedYet: while an upstream's list was never read, a metric nobody lists gets a 503
// naming it, not a 404 an HPA would take as final; once read, the 404 is ours.
func TestNotListedYet(t *testing.T) {
	up := newFakeUpstream(t, []string{"keda_ext"}, nil)
	f, err := New(ours{}, []Spec{spec(t, External, up.URL+",name=keda,insecure-skip-tls-verify=true,auth=none")}, nil, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := f.Wrap(inner)
	path := "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext"
	if rec := get(h, path, nil); rec.Code != 503 || !strings.Contains(rec.Body.String(), "keda (not read yet)") {
		t.Errorf("before the first list: %d %s", rec.Code, rec.Body.String())
	}
	if rec := get(h, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/ours_ext", nil); rec.Code != 299 {
		t.Errorf("ours before the first list: %d", rec.Code)
	}
	f.RefreshAll(context.Background())
	if rec := get(h, path, nil); rec.Code != 200 {
		t.Errorf("after the first list: %d %s", rec.Code, rec.Body.String())
	}
	if rec := get(h, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/nobody", nil); rec.Code != 299 {
		t.Errorf("unknown after the first list: %d", rec.Code)
	}
}

// TestCatchAll: KEDA's metrics server lists only the placeholder "externalmetrics", never its ScaledObjects'
// metric names (s0-prometheus, ...). A catch-all upstream gets every metric nobody lists (before this,
// such a request got our 404: the e2e TestE2EKedaForward against a real KEDA failed on it); ours and those
// an upstream lists keep their answer; a catch-all upstream that is down gets the 503 naming it.
func TestCatchAll(t *testing.T) {
	lister := newFakeUpstream(t, []string{"listed_ext"}, nil)
	keda := newFakeUpstream(t, []string{"externalmetrics"}, nil)
	keda.answer = func(*http.Request) (int, string) { return 200, "keda" }
	lister.answer = func(*http.Request) (int, string) { return 200, "lister" }
	f, err := New(ours{}, []Spec{
		spec(t, External, keda.URL+",name=keda,insecure-skip-tls-verify,auth=none,catch-all"),
		spec(t, External, lister.URL+",name=lister,insecure-skip-tls-verify,auth=none"),
	}, nil, 2*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.RefreshAll(context.Background())
	h := f.Wrap(inner)
	p := "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/"
	for metric, want := range map[string]string{
		"s0-prometheus": "keda",   // nobody lists it
		"ours_ext":      "ours",   // ours first
		"listed_ext":    "lister", // an upstream that lists it wins over the catch-all
	} {
		rec := get(h, p+metric+"?labelSelector=scaledobject.keda.sh%2Fname%3Dweb", nil)
		if !strings.HasPrefix(rec.Body.String(), want) {
			t.Errorf("%s: answered %d %q, want %s's answer", metric, rec.Code, rec.Body.String(), want)
		}
	}
	if r := keda.last(); r == nil || r.URL.RequestURI() != p+"s0-prometheus?labelSelector=scaledobject.keda.sh%2Fname%3Dweb" {
		t.Errorf("keda asked %v", r)
	}
	// Without catch-all the same request is ours (our 404 in the real server).
	g, err := New(ours{}, []Spec{spec(t, External, keda.URL+",name=keda,insecure-skip-tls-verify,auth=none")}, nil, 2*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	g.RefreshAll(context.Background())
	if rec := get(g.Wrap(inner), p+"s0-prometheus", nil); rec.Code != 299 {
		t.Errorf("without catch-all: %d %s, want ours", rec.Code, rec.Body.String())
	}
	keda.Close()
	rec := get(h, p+"s0-prometheus", nil)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "upstream keda") || !strings.Contains(rec.Body.String(), "s0-prometheus") {
		t.Errorf("catch-all upstream down: %d %s, want a 503 naming upstream keda", rec.Code, rec.Body.String())
	}
	if rec := get(h, p+"ours_ext", nil); rec.Code != 299 {
		t.Errorf("ours while keda is down: %d", rec.Code)
	}
}

func names[T any](items []T, name func(T) string) []string {
	var out []string
	for _, i := range items {
		out = append(out, name(i))
	}
	return out
}

// TestDiscoveryUnionAndClashes: discovery lists ours plus each upstream's metrics that nobody
// earlier serves; clashes are counted, shown at /readyz/forward and kept after a failed list.
func TestDiscoveryUnionAndClashes(t *testing.T) {
	a := newFakeUpstream(t, []string{"a_ext", "clash_ext", "shared_ext"}, []metav1.APIResource{{Name: "pods/a_custom", Namespaced: true}, {Name: "pods/ours_custom", Namespaced: true}})
	b := newFakeUpstream(t, []string{"b_ext", "shared_ext"}, nil)
	f, err := New(ours{}, []Spec{
		spec(t, External, a.URL+",name=a,insecure-skip-tls-verify,auth=none"),
		spec(t, External, b.URL+",name=b,insecure-skip-tls-verify,auth=none"),
		spec(t, Custom, a.URL+",name=a,insecure-skip-tls-verify,auth=none"),
	}, nil, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ext, cm := f.External(oursProvider{}), f.Custom(oursProvider{})
	if got := names(ext.ListAllExternalMetrics(), func(i provider.ExternalMetricInfo) string { return i.Metric }); strings.Join(got, " ") != "ours_ext clash_ext" {
		t.Errorf("before any list, external discovery: %v", got)
	}
	f.RefreshAll(context.Background())
	want := "ours_ext clash_ext a_ext shared_ext b_ext"
	if got := names(ext.ListAllExternalMetrics(), func(i provider.ExternalMetricInfo) string { return i.Metric }); strings.Join(got, " ") != want {
		t.Errorf("external discovery: %v, want %s", got, want)
	}
	custom := func(i provider.CustomMetricInfo) string { return customKey(i.GroupResource, i.Metric) }
	if got := names(cm.ListAllMetrics(), custom); strings.Join(got, " ") != "pods/ours_custom pods/a_custom" {
		t.Errorf("custom discovery: %v", got)
	}
	wantClashes := []Clash{
		{API: Custom, Metric: "pods/ours_custom", Upstream: "a", Winner: Ours},
		{API: External, Metric: "clash_ext", Upstream: "a", Winner: Ours},
		{API: External, Metric: "shared_ext", Upstream: "b", Winner: "a"},
	}
	check := func(when string) {
		got := f.Clashes()
		if len(got) != len(wantClashes) {
			t.Fatalf("%s: clashes %v, want %v", when, got, wantClashes)
		}
		for i := range got {
			if got[i] != wantClashes[i] {
				t.Errorf("%s: clash %d: %v, want %v", when, i, got[i], wantClashes[i])
			}
		}
		if n := testutil.ToFloat64(f.metrics.clashes.WithLabelValues(External, "a")); n != 1 {
			t.Errorf("%s: clashes of a: %v", when, n)
		}
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz/forward", nil))
		body := rec.Body.String()
		for _, s := range []string{`3 clashes`, `clash: external metric "clash_ext" is listed by upstream a and answered by promql-adapter`, `clash: external metric "shared_ext" is listed by upstream b and answered by a`, `upstream a (external.metrics.k8s.io, ` + a.URL + `): 3 metrics`} {
			if rec.Code != 200 || !strings.Contains(body, s) {
				t.Errorf("%s: /readyz/forward %d lacks %q:\n%s", when, rec.Code, s, body)
			}
		}
	}
	check("after the first list")
	f.RefreshAll(context.Background())
	if len(f.logged) != 3 {
		t.Errorf("clashes logged: %d, want each once", len(f.logged))
	}
	// the shared name goes to the first upstream that lists it
	a.answer = func(*http.Request) (int, string) { return 200, "from a" }
	if rec := get(f.Wrap(inner), "/apis/external.metrics.k8s.io/v1beta1/namespaces/x/shared_ext", nil); rec.Body.String() != "from a" {
		t.Errorf("shared_ext answered by %q", rec.Body.String())
	}
	b.Close()
	f.RefreshAll(context.Background())
	if got := names(ext.ListAllExternalMetrics(), func(i provider.ExternalMetricInfo) string { return i.Metric }); strings.Join(got, " ") != want {
		t.Errorf("external discovery after b failed: %v, want the last list kept", got)
	}
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz/forward", nil))
	if !strings.Contains(rec.Body.String(), "upstream b (external.metrics.k8s.io, "+b.URL+"): 2 metrics, listed") || !strings.Contains(rec.Body.String(), "last attempt failed") {
		t.Errorf("/readyz/forward after b failed:\n%s", rec.Body.String())
	}
}

// oursProvider is ours as a full provider, for the union wrappers.
type oursProvider struct {
	ours
	provider.CustomMetricsProvider
	provider.ExternalMetricsProvider
}

func (oursProvider) ListAllMetrics() []provider.CustomMetricInfo { return ours{}.ListAllMetrics() }
func (oursProvider) ListAllExternalMetrics() []provider.ExternalMetricInfo {
	return ours{}.ListAllExternalMetrics()
}

// TestImpersonate: with identity=impersonate the upstream is asked to act as the caller.
func TestImpersonate(t *testing.T) {
	up := newFakeUpstream(t, []string{"keda_ext"}, nil)
	f, err := New(ours{}, []Spec{spec(t, External, up.URL+",name=keda,ca-file="+caFile(t, up.Server)+",identity=impersonate")}, kube, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.RefreshAll(context.Background())
	if rec := get(f.Wrap(inner), "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext", nil); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	h := up.last().Header
	if h.Get("Authorization") != "Bearer our-sa-token" || h.Get("Impersonate-User") != "system:serviceaccount:kube-system:horizontal-pod-autoscaler" ||
		strings.Join(h.Values("Impersonate-Group"), ",") != "system:serviceaccounts,system:authenticated" ||
		h.Get("Impersonate-Extra-Authentication.kubernetes.io%2fpod-Name") != "hpa-1" {
		t.Errorf("upstream saw %v", h)
	}
}

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "https://keda-operator-metrics-apiserver.keda:443", want: Spec{API: External, Name: "keda-operator-metrics-apiserver.keda:443", URL: "https://keda-operator-metrics-apiserver.keda:443", Auth: AuthServiceAccount}},
		{in: "https://10.0.0.1:6443,name=keda,ca-file=/ca.crt,server-name=keda.svc", want: Spec{API: External, Name: "keda", URL: "https://10.0.0.1:6443", CAFile: "/ca.crt", ServerName: "keda.svc", Auth: AuthServiceAccount}},
		{in: "https://x, cluster-ca, identity=impersonate", want: Spec{API: External, Name: "x", URL: "https://x", ClusterCA: true, Auth: AuthServiceAccount, Impersonate: true}},
		{in: "https://x,cert-file=/c,key-file=/k", want: Spec{API: External, Name: "x", URL: "https://x", Auth: AuthCert, CertFile: "/c", KeyFile: "/k"}},
		{in: "https://x,token-file=/t,insecure-skip-tls-verify=true", want: Spec{API: External, Name: "x", URL: "https://x", Auth: AuthToken, TokenFile: "/t", Insecure: true}},
		{in: "https://keda:443,name=keda,catch-all", want: Spec{API: External, Name: "keda", URL: "https://keda:443", Auth: AuthServiceAccount, CatchAll: true}},
		{in: "https://keda:443,catch-all=false", want: Spec{API: External, Name: "keda:443", URL: "https://keda:443", Auth: AuthServiceAccount}},
		{in: "https://x,catch-all=sometimes", err: "catch-all: want true or false"},
		{in: "keda.keda.svc", err: "the first field must be the upstream's URL"},
		{in: "https://x?a=b", err: "no query"},
		{in: "https://x,colour=red", err: `unknown key "colour"`},
		{in: "https://x,auth=basic", err: "want serviceaccount, serviceaccount-insecure, cert, token or none"},
		// Our ServiceAccount token only over https with a verified certificate (review N6).
		{in: "http://keda:8080", err: "upstream keda:8080: auth=serviceaccount (the default) would send our ServiceAccount token"},
		{in: "http://keda:8080,name=keda,auth=serviceaccount", err: "upstream keda: auth=serviceaccount (the default) would send our ServiceAccount token, a credential for kube-apiserver, over plain HTTP"},
		{in: "https://keda,insecure-skip-tls-verify", err: "upstream keda: auth=serviceaccount (the default) would send our ServiceAccount token, a credential for kube-apiserver, to a server whose certificate is not verified (insecure-skip-tls-verify)"},
		{in: "https://keda,insecure-skip-tls-verify,identity=impersonate", err: "auth=serviceaccount-insecure to send it anyway"},
		{in: "http://keda:8080,auth=none", want: Spec{API: External, Name: "keda:8080", URL: "http://keda:8080", Auth: AuthNone}},
		{in: "http://keda:8080,auth=serviceaccount-insecure", want: Spec{API: External, Name: "keda:8080", URL: "http://keda:8080", Auth: AuthServiceAccountInsecure}},
		{in: "https://keda,insecure-skip-tls-verify,auth=serviceaccount-insecure", want: Spec{API: External, Name: "keda", URL: "https://keda", Insecure: true, Auth: AuthServiceAccountInsecure}},
		{in: "https://x,auth=cert", err: "needs both cert-file and key-file"},
		{in: "https://x,cert-file=/c", err: "needs both cert-file and key-file"},
		{in: "https://x,auth=none,token-file=/t", err: "token-file needs auth=token"},
		{in: "https://x,insecure-skip-tls-verify,ca-file=/c", err: "excludes ca-file"},
		{in: "https://x,name", err: "name: want key=value"},
		{in: "https://x,identity=caller", err: "want ours or impersonate"},
	} {
		got, err := ParseSpec(External, c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "--forward-external") {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
}

func TestRestConfig(t *testing.T) {
	k := &rest.Config{Host: "https://10.96.0.1", BearerTokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token",
		TLSClientConfig: rest.TLSClientConfig{CAFile: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}}
	c, err := spec(t, Custom, "https://pa.monitoring:443,ca-file=/pa-ca.crt").RestConfig(k)
	if err != nil || c.Host != "https://pa.monitoring:443" || c.BearerTokenFile != k.BearerTokenFile || c.CAFile != "/pa-ca.crt" {
		t.Errorf("serviceaccount: %+v %v", c, err)
	}
	c, err = spec(t, Custom, "https://pa.monitoring:443,cluster-ca,auth=none").RestConfig(k)
	if err != nil || c.BearerTokenFile != "" || c.CAFile != k.CAFile {
		t.Errorf("cluster-ca, no auth: %+v %v", c, err)
	}
	if _, err := spec(t, Custom, "https://pa.monitoring:443").RestConfig(nil); err == nil || !strings.Contains(err.Error(), "--lister-kubeconfig") {
		t.Errorf("serviceaccount without a cluster: %v", err)
	}
	if _, err := New(ours{}, []Spec{spec(t, External, "https://a,name=x,auth=none"), spec(t, External, "https://b,name=x,auth=none")}, nil, time.Second, nil); err == nil || !strings.Contains(err.Error(), "distinct name") {
		t.Errorf("two upstreams named alike: %v", err)
	}
}

func TestParsePath(t *testing.T) {
	for _, c := range []struct {
		path string
		want target
		ok   bool
	}{
		{"/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m", target{External, "", "m"}, true},
		{"/apis/external.metrics.k8s.io/v1beta1/namespaces/ns", target{}, false},
		{"/apis/external.metrics.k8s.io/v1beta1", target{}, false},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m", target{Custom, "pods", "m"}, true},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/metrics/m", target{Custom, "namespaces", "m"}, true},
		{"/apis/custom.metrics.k8s.io/v1beta2/nodes/n/m", target{Custom, "nodes", "m"}, true},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces//pods/*/m", target{}, false},
		{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/x/m/extra", target{}, false},
		{"/apis/metrics.k8s.io/v1beta1/nodes/n/m", target{}, false},
		{"/healthz", target{}, false},
	} {
		got, ok := parsePath(c.path)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %+v %v, want %+v %v", c.path, got, ok, c.want, c.ok)
		}
	}
}

// tokenRecorder is an upstream that lists keda_ext, answers every metric request and records the
// Authorization header of every call (lists included).
type tokenRecorder struct {
	*httptest.Server
	mu   sync.Mutex
	auth []string
}

func newTokenRecorder(t *testing.T, tls bool) *tokenRecorder {
	r := &tokenRecorder{}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if req.URL.Path == "/apis/external.metrics.k8s.io/v1beta1" {
			_ = json.NewEncoder(w).Encode(metav1.APIResourceList{APIResources: []metav1.APIResource{{Name: "keda_ext", Namespaced: true}}})
			return
		}
		_, _ = io.WriteString(w, `{"kind":"ExternalMetricValueList","items":[]}`)
	}))
	if tls {
		r.StartTLS()
	} else {
		r.Start()
	}
	t.Cleanup(r.Close)
	return r
}

func (r *tokenRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.auth
	r.auth = nil
	return a
}

// TestServiceAccountTokenOnlyOverVerifiedTLS (review N6): our ServiceAccount token, a credential for
// kube-apiserver, never reaches an upstream over plain HTTP or unverified TLS unless
// auth=serviceaccount-insecure asks for it; the spec is refused with an error naming the upstream.
func TestServiceAccountTokenOnlyOverVerifiedTLS(t *testing.T) {
	const token = "Bearer sa-secret"
	kube := &rest.Config{Host: "https://kube-apiserver.invalid", BearerToken: "sa-secret"}
	plain, verified := newTokenRecorder(t, false), newTokenRecorder(t, true)
	ca := caFile(t, verified.Server)
	for _, c := range []struct {
		name      string
		up        *tokenRecorder
		spec      string
		err       string
		wantToken bool
	}{
		{name: "plain HTTP, auth by default", up: plain, spec: plain.URL + ",name=plain", err: "upstream plain: auth=serviceaccount"},
		{name: "plain HTTP, auth=serviceaccount", up: plain, spec: plain.URL + ",name=plain,auth=serviceaccount,catch-all", err: "over plain HTTP"},
		{name: "unverified TLS", up: verified, spec: verified.URL + ",name=unverified,insecure-skip-tls-verify", err: "upstream unverified: auth=serviceaccount"},
		{name: "plain HTTP, auth=none", up: plain, spec: plain.URL + ",name=plain,auth=none"},
		{name: "plain HTTP, explicit opt-in", up: plain, spec: plain.URL + ",name=plain,auth=serviceaccount-insecure", wantToken: true},
		{name: "verified TLS", up: verified, spec: verified.URL + ",name=verified,ca-file=" + ca, wantToken: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.up.take()
			sp, err := ParseSpec(External, c.spec)
			if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Errorf("ParseSpec: %v, want an error with %q", err, c.err)
			}
			if err == nil {
				f, err := New(ours{}, []Spec{sp}, kube, 5*time.Second, prometheus.NewRegistry())
				if err != nil {
					t.Fatal(err)
				}
				f.RefreshAll(context.Background())
				if rec := get(f.Wrap(inner), "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext", nil); rec.Code != 200 {
					t.Errorf("forwarded: %d %s", rec.Code, rec.Body.String())
				}
			}
			seen := c.up.take()
			sent := 0
			for _, a := range seen {
				if a == token {
					sent++
				}
			}
			if c.wantToken && (len(seen) == 0 || sent != len(seen)) || !c.wantToken && sent > 0 {
				t.Errorf("upstream saw Authorization %q, want our token: %v", seen, c.wantToken)
			}
		})
	}
}

// TestUnverifiedUpstreamNamesTheCA: an upstream whose certificate we cannot verify (KEDA's own CA
// not given) gets an error naming the upstream and ca-file=, in its list's state and in the 503.
func TestUnverifiedUpstreamNamesTheCA(t *testing.T) {
	up := newTokenRecorder(t, true)
	f, err := New(ours{}, []Spec{spec(t, External, up.URL+",name=keda,catch-all")}, kube, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.RefreshAll(context.Background())
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz/forward", nil))
	for _, want := range []string{"upstream keda", "certificate", "ca-file="} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/readyz/forward lacks %q:\n%s", want, rec.Body.String())
		}
	}
	rec = get(f.Wrap(inner), "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/s0-prometheus", nil)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "upstream keda") || !strings.Contains(rec.Body.String(), "ca-file=") {
		t.Errorf("forwarded to an unverified upstream: %d %s, want a 503 naming keda and ca-file=", rec.Code, rec.Body.String())
	}
	if n := len(up.take()); n != 0 {
		t.Errorf("the unverified upstream got %d requests through", n)
	}
}

// TestUpstreamHeadersFiltered (review N14): only the allow-listed headers of an upstream's answer
// reach the caller. A Retry-After on the upstream's 503 would make client-go retry it up to 10
// times (what our own 503s avoid); Set-Cookie and the like have no business in a metrics answer.
func TestUpstreamHeadersFiltered(t *testing.T) {
	up := newFakeUpstream(t, []string{"keda_ext"}, nil)
	up.header = http.Header{
		"Retry-After":               {"1"},
		"Set-Cookie":                {"session=upstream; Path=/"},
		"Www-Authenticate":          {"Bearer"},
		"Location":                  {"https://elsewhere.invalid/"},
		"Strict-Transport-Security": {"max-age=1"},
		"X-Upstream-Internal":       {"10.0.0.7"},
		"Cache-Control":             {"no-cache, private"},
		"Warning":                   {`299 - "custom.metrics.k8s.io/v1beta1 is deprecated"`},
	}
	f, err := New(ours{}, []Spec{spec(t, External, up.URL+",name=keda,ca-file="+caFile(t, up.Server))}, kube, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.RefreshAll(context.Background())
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusOK} {
		up.answer = func(*http.Request) (int, string) { return code, `{"kind":"Status"}` }
		rec := get(f.Wrap(inner), "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext", nil)
		if rec.Code != code {
			t.Fatalf("%d: forwarded %d %s", code, rec.Code, rec.Body.String())
		}
		for _, k := range []string{"Retry-After", "Set-Cookie", "Www-Authenticate", "Location", "Strict-Transport-Security", "X-Upstream-Internal", "Audit-Id"} {
			if v := rec.Header().Values(k); len(v) != 0 {
				t.Errorf("%d: the upstream's %s passed through: %v", code, k, v)
			}
		}
		for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-cache, private", "Warning": up.header.Get("Warning"), "X-Content-Type-Options": "nosniff"} {
			if got := rec.Header().Get(k); got != want {
				t.Errorf("%d: %s %q, want %q", code, k, got, want)
			}
		}
	}
}

// served is a Served whose lists and discovery state the test changes.
type served struct {
	mu       sync.Mutex
	pending  bool
	external []string
	custom   []provider.CustomMetricInfo
}

func (s *served) set(pending bool, external []string, custom []provider.CustomMetricInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending, s.external, s.custom = pending, external, custom
}

func (s *served) ListAllMetrics() []provider.CustomMetricInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.custom
}

func (s *served) ListAllExternalMetrics() []provider.ExternalMetricInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []provider.ExternalMetricInfo
	for _, m := range s.external {
		out = append(out, provider.ExternalMetricInfo{Metric: m})
	}
	return out
}

func (s *served) DiscoveryPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// TestRoutingFollowsWhatWeServed (review N8): a name both we and an upstream serve must not flip to
// the upstream while our list is incomplete. Before our first discovery pass a name an upstream
// lists (or a catch-all upstream would get) is answered 503 "not listed yet", not forwarded; a
// name we served stays ours for RecentlyServed after our list drops it (a failed or aged relist),
// and only then goes to the upstream.
func TestRoutingFollowsWhatWeServed(t *testing.T) {
	up := newFakeUpstream(t, []string{"m_ext"}, []metav1.APIResource{{Name: "pods/m_custom", Namespaced: true}})
	keda := newFakeUpstream(t, []string{"externalmetrics"}, nil)
	up.answer = func(*http.Request) (int, string) { return 200, "upstream" }
	keda.answer = func(*http.Request) (int, string) { return 200, "keda" }
	ca, kedaCA := caFile(t, up.Server), caFile(t, keda.Server)
	ours := &served{pending: true}
	f, err := New(ours, []Spec{
		spec(t, External, up.URL+",name=up,ca-file="+ca),
		spec(t, External, keda.URL+",name=keda,ca-file="+kedaCA+",catch-all"),
		spec(t, Custom, up.URL+",name=up,ca-file="+ca),
	}, kube, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	f.now = func() time.Time { return now }
	f.RefreshAll(context.Background())
	h := f.Wrap(inner)
	const (
		ext    = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/m_ext"
		custom = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/m_custom"
		other  = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/s0-prometheus"
	)
	mine := []provider.CustomMetricInfo{{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "m_custom"}}
	step := func(when string, want map[string]string) {
		t.Helper()
		for path, w := range want {
			before := up.count() + keda.count()
			rec := get(h, path, nil)
			got := rec.Body.String()
			switch w {
			case "ours":
				if rec.Code != 299 {
					t.Errorf("%s: %s answered %d %q, want ours", when, path, rec.Code, got)
				}
			case "pending":
				if rec.Code != 503 || !strings.Contains(got, "not listed yet") || !strings.Contains(got, "discovery") {
					t.Errorf("%s: %s answered %d %q, want 503 not listed yet", when, path, rec.Code, got)
				}
			default:
				if rec.Code != 200 || got != w {
					t.Errorf("%s: %s answered %d %q, want %s's", when, path, rec.Code, got, w)
				}
			}
			if asked := up.count() + keda.count() - before; (w == "ours" || w == "pending") && asked != 0 {
				t.Errorf("%s: %s was forwarded", when, path)
			}
		}
	}
	step("before our first discovery pass", map[string]string{ext: "pending", custom: "pending", other: "pending"})
	ours.set(false, []string{"m_ext"}, mine)
	step("ours listed", map[string]string{ext: "ours", custom: "ours", other: "keda"})
	f.RefreshAll(context.Background())
	now = now.Add(time.Minute)
	ours.set(false, nil, nil) // a relist aged them out (or a reload dropped them until the next pass)
	f.RefreshAll(context.Background())
	step("a minute after our list dropped them", map[string]string{ext: "ours", custom: "ours", other: "keda"})
	now = now.Add(RecentlyServed - 90*time.Second) // 30 s before RecentlyServed has passed since we last listed them
	step("just within RecentlyServed", map[string]string{ext: "ours", custom: "ours"})
	now = now.Add(time.Minute)
	step("past RecentlyServed", map[string]string{ext: "upstream", custom: "upstream", other: "keda"})
	// Names we never served and a pass still pending after a reload: 503, never forwarded.
	ours.set(true, nil, nil)
	step("pending again", map[string]string{ext: "pending", other: "pending"})
	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz/forward", nil))
	if !strings.Contains(rec.Body.String(), "discovery pending") {
		t.Errorf("/readyz/forward does not say our discovery is pending:\n%s", rec.Body.String())
	}
}

// TestCredentialWarningsLogged: auth=serviceaccount-insecure is logged as a warning at start, naming
// the upstream; an unverified certificate is logged at the default level once, not on every refresh.
func TestCredentialWarningsLogged(t *testing.T) {
	logs := ptestutil.CaptureLogs(t)
	count := logs.Count
	plain, unverified := newTokenRecorder(t, false), newTokenRecorder(t, true)
	f, err := New(ours{}, []Spec{
		spec(t, External, plain.URL+",name=plain,auth=serviceaccount-insecure"),
		spec(t, Custom, unverified.URL+",name=keda"),
	}, kube, 5*time.Second, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if n := count("warning: upstream gets our ServiceAccount token", `"upstream"="plain"`); n != 1 {
		t.Errorf("auth=serviceaccount-insecure: %d warnings, want 1:\n%s", n, logs.String())
	}
	for range 3 {
		f.RefreshAll(context.Background())
	}
	if n := count("upstream's certificate not verified", `"upstream"="keda"`, "ca-file="); n != 1 {
		t.Errorf("unverified upstream: %d lines after 3 refreshes, want 1:\n%s", n, logs.String())
	}
}
