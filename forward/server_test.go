package forward_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/promql-adapter/promql-adapter/server"
)

// TestForwardThroughServer runs the real server (Run, --trust-loopback, on 127.0.0.1) in front of
// an httptest upstream adapter: discovery lists the union, ours is answered by us, the upstream's
// metric is forwarded with path and query and answered unchanged, what our authorization refuses is
// never forwarded, and a dead upstream gets a 503 naming it. It lives in forward's test binary: the
// API server leaves goroutines behind that race with the server package's tests that swap klog's logger.
func TestForwardThroughServer(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}`)
	}))
	defer prom.Close()

	var mu sync.Mutex
	var asked []*http.Request
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/apis/external.metrics.k8s.io/v1beta1" {
			var list metav1.APIResourceList
			for _, m := range []string{"keda_ext", "ours_ext", "denied_ext"} {
				list.APIResources = append(list.APIResources, metav1.APIResource{Name: m, Namespaced: true, Kind: "ExternalMetricValueList", Verbs: []string{"get"}})
			}
			_ = json.NewEncoder(w).Encode(list)
			return
		}
		mu.Lock()
		asked = append(asked, r.Clone(context.Background()))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted) // an unusual status, to see it passed unchanged
		_, _ = io.WriteString(w, `{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},"items":[{"metricName":"keda_ext","metricLabels":null,"timestamp":null,"value":"42"}]}`)
	}))
	defer upstream.Close()
	ca := write("upstream-ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: upstream.Certificate().Raw})))
	token := write("token", "forwarding-token\n")

	o := server.NewOptions()
	o.RulesFile = write("rules.yaml", "metrics:\n- name: ours_ext\n  resource: external\n  namespaced: false\n  query: sum(queue)\n")
	o.TrustLoopback, o.PrometheusURL = true, prom.URL
	o.ForwardExternal = []string{upstream.URL + ",name=keda,ca-file=" + ca + ",token-file=" + token}
	o.ForwardRefreshInterval = 100 * time.Millisecond
	o.Registerer = prometheus.NewRegistry()
	o.Authorizer = authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if a.GetResource() == "denied_ext" {
			return authorizer.DecisionDeny, "the test refuses denied_ext", nil
		}
		return authorizer.DecisionAllow, "", nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Server.SecureServing.Listener = ln
	o.Server.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, o) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the server did not stop")
		}
	}()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	base := "https://" + ln.Addr().String()
	get := func(path string) (int, string) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Discovery lists the union once the upstream's list is read in the background.
	deadline := time.Now().Add(60 * time.Second)
	var names []string
	for {
		code, body := get("/apis/external.metrics.k8s.io/v1beta1")
		var list metav1.APIResourceList
		names = nil
		if code == 200 && json.Unmarshal([]byte(body), &list) == nil {
			for _, r := range list.APIResources {
				names = append(names, r.Name)
			}
		}
		if len(names) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Join(names, " ") != "ours_ext keda_ext denied_ext" {
		t.Fatalf("discovery: %v, want ours then the upstream's, each once", names)
	}

	if code, body := get("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/ours_ext"); code != 200 || !strings.Contains(body, `"metricName":"ours_ext"`) || !strings.Contains(body, `"value":"3"`) {
		t.Errorf("ours: %d %s", code, body)
	}
	mu.Lock()
	n := len(asked)
	mu.Unlock()
	if n != 0 {
		t.Errorf("the upstream was asked for our metric")
	}

	path := "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext?labelSelector=scaledobject.keda.sh%2Fname%3Dworker"
	code, body := get(path)
	if code != http.StatusAccepted || !strings.Contains(body, `"value":"42"`) {
		t.Errorf("forwarded: %d %s", code, body)
	}
	mu.Lock()
	if len(asked) != 1 || asked[0].URL.RequestURI() != path || asked[0].Header.Get("Authorization") != "Bearer forwarding-token" {
		t.Errorf("the upstream was asked %d times: %v", len(asked), asked)
	}
	mu.Unlock()

	if code, body := get("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/denied_ext"); code != http.StatusForbidden || !strings.Contains(body, "the test refuses denied_ext") {
		t.Errorf("refused by our authorization: %d %s", code, body)
	}
	mu.Lock()
	if len(asked) != 1 {
		t.Errorf("a request our authorization refused was forwarded")
	}
	mu.Unlock()

	if code, body := get("/readyz/forward"); code != 200 || !strings.Contains(body, `clash: external metric "ours_ext" is listed by upstream keda and answered by promql-adapter`) {
		t.Errorf("/readyz/forward: %d %s", code, body)
	}

	upstream.Close()
	if code, body := get("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/keda_ext"); code != http.StatusServiceUnavailable || !strings.Contains(body, "upstream keda") {
		t.Errorf("upstream down: %d %s", code, body)
	}
	if code, _ := get("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/ours_ext"); code != 200 {
		t.Errorf("ours with the upstream down: %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz with the upstream down: %d", code)
	}
}
