package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/resourcemetrics"
)

type onePod struct{}

func (onePod) Pods(_ context.Context, ns string, _ labels.Selector) ([]*corev1.Pod, error) {
	return []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}}, nil
}

func (o onePod) Pod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	if name != "web-1" {
		return nil, apierrors.NewNotFound(metrics.Resource("podmetrics"), ns+"/"+name)
	}
	p, _ := o.Pods(ctx, ns, nil)
	return p[0], nil
}

type noNodes struct{}

func (noNodes) Nodes(context.Context, labels.Selector) ([]*metav1.PartialObjectMetadata, bool, error) {
	return nil, true, nil
}
func (noNodes) Node(_ context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	return nil, apierrors.NewNotFound(metrics.Resource("nodemetrics"), name)
}

type constQuerier struct{}

func (constQuerier) Query(_ context.Context, q string) (model.Vector, error) {
	v := 0.25
	if strings.Contains(q, "mem") {
		v = 1 << 20
	}
	return model.Vector{{Metric: model.Metric{"namespace": "shop", "pod": "web-1", "container": "app"}, Value: model.SampleValue(v)}}, nil
}

// TestServedAPIs builds the real API server with --apis=custom,resource: discovery lists metrics.k8s.io
// (v1 preferred, and v1beta1) and custom.metrics.k8s.io but not external.metrics.k8s.io, the OpenAPI
// spec builds, and a PodMetricsList is served in both versions.
func TestServedAPIs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, []byte("metrics:\n- name: up\n  resource: pods\n  query: sum by (namespace, pod) (up)\nresources:\n  window: 30s\n  cpu: {containerQuery: 'sum by (namespace, pod, container) (cpu)'}\n  memory: {containerQuery: 'sum by (namespace, pod, container) (mem)'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := NewOptions()
	o.RulesFile, o.TrustLoopback = path, true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o.Server.SecureServing.Listener = ln
	o.Server.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rf := &ruleFile{path: path, resolver: naming.BuiltinResources(), metrics: adapter.NewMetrics(reg)}
	rules, err := rf.load()
	if err != nil {
		t.Fatal(err)
	}
	apis, err := resolveAPIs([]string{APICustom, APIResource}, rules.Resource != nil, true)
	if err != nil {
		t.Fatal(err)
	}
	p := adapter.NewProvider(adapter.Options{Querier: nil, Metrics: adapter.NewMetrics(prometheus.NewRegistry())}, rules)
	srv, err := newServer(o, nil, p, nil, rf, apis, nil)
	if err != nil {
		t.Fatal(err)
	}
	rp := resourcemetrics.NewProvider(constQuerier{}, rules.Resource)
	if err := resourcemetrics.Install(srv.GenericAPIServer, rp, onePod{}, noNodes{}); err != nil {
		t.Fatal(err)
	}
	prepared := srv.GenericAPIServer.PrepareRun()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.1:1234"
		prepared.Handler.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	code, body := get("/apis")
	if code != 200 || !strings.Contains(body, `"metrics.k8s.io"`) || !strings.Contains(body, `"custom.metrics.k8s.io"`) || strings.Contains(body, "external.metrics.k8s.io") {
		t.Errorf("/apis %d: %s", code, body)
	}
	var group struct {
		PreferredVersion struct{ Version string }
		Versions         []struct{ Version string }
	}
	_, body = get("/apis/metrics.k8s.io")
	if err := json.Unmarshal([]byte(body), &group); err != nil || group.PreferredVersion.Version != "v1" || len(group.Versions) != 2 {
		t.Errorf("/apis/metrics.k8s.io: %s", body)
	}
	for _, v := range []string{"v1", "v1beta1"} {
		code, body := get("/apis/metrics.k8s.io/" + v + "/namespaces/shop/pods")
		if code != 200 || !strings.Contains(body, `"kind":"PodMetricsList"`) || !strings.Contains(body, `"apiVersion":"metrics.k8s.io/`+v+`"`) ||
			!strings.Contains(body, `"cpu":"250m"`) || !strings.Contains(body, `"memory":"1Mi"`) || !strings.Contains(body, `"window":"30s"`) {
			t.Errorf("%s pods %d: %s", v, code, body)
		}
		if code, body := get("/apis/metrics.k8s.io/" + v + "/namespaces/shop/pods/nope"); code != 404 {
			t.Errorf("%s missing pod %d: %s", v, code, body)
		}
	}
	if code, body := get("/openapi/v2"); code != 200 || !strings.Contains(body, "io.k8s.metrics.pkg.apis.metrics.v1.PodMetrics") {
		t.Errorf("/openapi/v2 %d (%d bytes)", code, len(body))
	}
}

func TestResolveAPIs(t *testing.T) {
	if a, _ := resolveAPIs(nil, true, true); a.String() != "custom,external,resource" {
		t.Errorf("default with resource rules: %s", a)
	}
	if a, _ := resolveAPIs(nil, false, true); a.String() != "custom,external" {
		t.Errorf("default without resource rules: %s", a)
	}
	if _, err := resolveAPIs([]string{APIResource}, false, true); err == nil || !strings.Contains(err.Error(), "no resource rules") {
		t.Errorf("resource without rules: %v", err)
	}
	if _, err := resolveAPIs([]string{APIResource}, true, false); err == nil || !strings.Contains(err.Error(), "--lister-kubeconfig") {
		t.Errorf("resource without a cluster: %v", err)
	}
	if err := validateAPIs([]string{"custom", "metrics"}); err == nil || !strings.Contains(err.Error(), `"metrics"`) {
		t.Errorf("unknown api: %v", err)
	}
}
