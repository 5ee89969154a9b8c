package integration

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
)

// methodProxy is a reverse proxy on 127.0.0.1 in front of the package's real Prometheus, as an
// ingress or an auth proxy may sit in front of one: it counts the methods it sees, answers 405
// to every POST when refusePost is set, and 414 to a GET of /api/v1/query whose URL is longer than
// maxQueryURL when that is set.
type methodProxy struct {
	url         string
	refusePost  bool
	maxQueryURL int

	mu     sync.Mutex
	counts map[string]int // by method
}

func startMethodProxy(t *testing.T, refusePost bool, maxQueryURL int) *methodProxy {
	t.Helper()
	target, err := url.Parse(env.prom.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &methodProxy{refusePost: refusePost, maxQueryURL: maxQueryURL, counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[r.Method]++
		p.mu.Unlock()
		switch {
		case p.refusePost && r.Method == http.MethodPost:
			http.Error(w, "405 Method Not Allowed (the proxy allows only GET)", http.StatusMethodNotAllowed)
		case p.maxQueryURL > 0 && r.Method == http.MethodGet && r.URL.Path == "/api/v1/query" && len(r.URL.RequestURI()) > p.maxQueryURL:
			http.Error(w, "414 Request-URI Too Large", http.StatusRequestURITooLong)
		default:
			rp.ServeHTTP(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.url = "http://" + ln.Addr().String()
	return p
}

// take returns the counts by method since the last take.
func (p *methodProxy) take() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	p.counts = map[string]int{}
	return c
}

// eluFromAdapter checks that the adapter at base serves shop's elu_utilization with Prometheus's values.
func eluFromAdapter(t *testing.T, base string) {
	t.Helper()
	var list cmv1beta2.MetricValueList
	getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization", 200, &list)
	want := byLabel(promQuery(t, `avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`), "pod")
	if len(list.Items) != pods || len(want) != pods {
		t.Fatalf("adapter returned %d items, prometheus %d", len(list.Items), len(want))
	}
	for _, it := range list.Items {
		if it.Value.MilliValue() != milli(want[it.DescribedObject.Name]) {
			t.Errorf("%s: adapter %s, prometheus %v", it.DescribedObject.Name, it.Value.String(), want[it.DescribedObject.Name])
		}
	}
}

// TestPrometheusVerb runs the adapter against the real Prometheus behind a real reverse proxy:
// with POST (the default) a proxy answering 405 makes queries fall back to GET, for good; with
// --prometheus-verb=GET no call is ever POSTed; a proxy refusing a long GET URL with 414 gives an
// error that says so and names --prometheus-verb=POST.
func TestPrometheusVerb(t *testing.T) {
	t.Run("POST refused with 405 falls back to GET", func(t *testing.T) {
		proxy := startMethodProxy(t, true, 0)
		opts := adapterOptions(integrationRules, proxy.url)
		base := startTestAdapter(t, opts)
		eluFromAdapter(t, base)
		first := proxy.take()
		if first[http.MethodPost] == 0 || first[http.MethodGet] == 0 {
			t.Errorf("until the first answers: %v, want POSTs refused then GETs", first)
		}
		// Remembered: later queries and discovery passes go by GET directly.
		time.Sleep(1500 * time.Millisecond) // a discovery pass (--series-relist-interval 1s) or two
		eluFromAdapter(t, base)
		if later := proxy.take(); later[http.MethodPost] != 0 || later[http.MethodGet] == 0 {
			t.Errorf("after the fallback: %v, want GETs only", later)
		}
	})
	t.Run("GET never posts", func(t *testing.T) {
		proxy := startMethodProxy(t, false, 0)
		opts := adapterOptions(integrationRules, proxy.url)
		opts.PrometheusVerb = "GET"
		base := startTestAdapter(t, opts)
		eluFromAdapter(t, base)
		time.Sleep(1500 * time.Millisecond)
		var ext struct{ Items []struct{ Value string } }
		getJSONAt(t, base, "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_messages_ready", 200, &ext)
		if got := proxy.take(); got[http.MethodPost] != 0 || got[http.MethodGet] == 0 {
			t.Errorf("with --prometheus-verb=GET the proxy saw %v, want GETs only", got)
		}
	})
	t.Run("GET refused with 414 says so", func(t *testing.T) {
		proxy := startMethodProxy(t, false, 64)
		opts := adapterOptions(integrationRules, proxy.url)
		opts.PrometheusVerb = "GET"
		base := startTestAdapter(t, opts)
		body := getJSONAt(t, base, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization", http.StatusServiceUnavailable, nil)
		for _, want := range []string{"414", "URI too long", "--prometheus-verb=POST"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("answer lacks %q: %s", want, body)
			}
		}
		if got := proxy.take(); got[http.MethodPost] != 0 {
			t.Errorf("with --prometheus-verb=GET the proxy saw %v", got)
		}
	})
}
