package loadsim_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

// serve runs s.Serve on a fresh loopback listener until the test ends and returns the base URL.
func serve(t *testing.T, s *loadsim.Simulator) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return "http://" + ln.Addr().String()
}

// do sends a request and returns the status code and body.
func do(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// scrapeMetrics fetches and parses base/metrics in the classic text format.
func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := do(t, http.MethodGet, base+"/metrics", "", "Accept", "text/plain;version=0.0.4")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, body)
	}
	return fams
}

// samples returns a family's samples as label-string to value, e.g. `namespace=ns,pod=p` -> 0.5.
func samples(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		var v float64
		switch {
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}

func TestScrapeMetrics(t *testing.T) {
	pods, clock := newFakePods(), newFakeClock()
	pods.Set("ns", "app=web", "web-0", "web-1")
	idle := loadsim.Target{Namespace: "jobs", Deployment: "worker", Service: "worker", Capacity: 10,
		MatchLabels: map[string]string{"app.kubernetes.io/name": "worker"}, Load: 30}
	s := newSim(t, pods, clock, webTarget(100, 150), idle)
	clock.Advance(2 * time.Second)
	s.Tick()
	base := serve(t, s)

	fams := scrapeMetrics(t, base)
	want := map[string]struct {
		typ     dto.MetricType
		samples map[string]float64
	}{
		loadsim.MetricELU: {dto.MetricType_GAUGE, map[string]float64{
			"namespace=ns,pod=web-0": 0.75, "namespace=ns,pod=web-1": 0.75}},
		loadsim.MetricRequests: {dto.MetricType_COUNTER, map[string]float64{
			"namespace=ns,pod=web-0,service=web-svc": 150, "namespace=ns,pod=web-1,service=web-svc": 150}},
		loadsim.MetricInFlight: {dto.MetricType_GAUGE, map[string]float64{
			"namespace=ns,service=web-svc": 7.5, "namespace=jobs,service=worker": 1.5}},
		loadsim.MetricQueue: {dto.MetricType_GAUGE, map[string]float64{
			"namespace=ns,queue=web": 0, "namespace=jobs,queue=worker": 60}},
		// ELU 0.75 for 2 s; one container named after the Deployment (the fake source knows no containers).
		loadsim.MetricContainerCPU: {dto.MetricType_COUNTER, map[string]float64{
			"container=web,namespace=ns,pod=web-0": 1.5, "container=web,namespace=ns,pod=web-1": 1.5}},
		loadsim.MetricContainerMemory: {dto.MetricType_GAUGE, map[string]float64{
			"container=web,namespace=ns,pod=web-0": loadsim.ContainerMemoryBase + 0.75*loadsim.ContainerMemoryPerELU,
			"container=web,namespace=ns,pod=web-1": loadsim.ContainerMemoryBase + 0.75*loadsim.ContainerMemoryPerELU}},
	}
	if len(fams) != len(want) {
		var names []string
		for n := range fams {
			names = append(names, n)
		}
		t.Errorf("families %v, want exactly %d", names, len(want))
	}
	for name, w := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("no family %s", name)
			continue
		}
		if f.GetType() != w.typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), w.typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s: no HELP", name)
		}
		got := samples(f)
		if len(got) != len(w.samples) {
			t.Errorf("%s: samples %v, want %v", name, got, w.samples)
		}
		for k, v := range w.samples {
			if g, ok := got[k]; !ok || !near(g, v) {
				t.Errorf("%s{%s} = %v (present %v), want %v", name, k, g, ok, v)
			}
		}
		if !model.LegacyValidation.IsValidMetricName(name) {
			t.Errorf("metric name %q is not classic", name)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !model.LegacyValidation.IsValidLabelName(l.GetName()) {
					t.Errorf("%s: label name %q is not classic", name, l.GetName())
				}
			}
		}
	}

	// A pod that is no longer Ready disappears from the exposition.
	pods.Set("ns", "app=web", "web-1")
	clock.Advance(time.Second)
	s.Tick()
	fams = scrapeMetrics(t, base)
	if got := samples(fams[loadsim.MetricELU]); len(got) != 1 || !near(got["namespace=ns,pod=web-1"], 1) {
		t.Errorf("ELU after web-0 left: %v, want only web-1 at 1", got)
	}
	if got := samples(fams[loadsim.MetricRequests]); len(got) != 1 || !near(got["namespace=ns,pod=web-1,service=web-svc"], 300) {
		t.Errorf("requests after web-0 left: %v, want only web-1 at 300", got)
	}
	if got := samples(fams[loadsim.MetricQueue]); !near(got["namespace=ns,queue=web"], 50) {
		t.Errorf("queue after web-0 left: %v, want web at 50", got)
	}
}

func TestControlAPI(t *testing.T) {
	pods, clock := newFakePods(), newFakeClock()
	pods.Set("ns", "app=web", "web-0", "web-1")
	s := newSim(t, pods, clock, webTarget(100, 20))
	base := serve(t, s)

	code, body := do(t, http.MethodGet, base+"/targets", "")
	if code != http.StatusOK {
		t.Fatalf("GET /targets: %d %s", code, body)
	}
	var list []loadsim.TargetStatus
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("decode /targets: %v\n%s", err, body)
	}
	if len(list) != 1 || list[0].Namespace != "ns" || list[0].Deployment != "web" || list[0].Load != 20 ||
		list[0].ReadyPods != 2 || !near(list[0].ELU, 0.1) || list[0].Queue != 0 || list[0].Selector != "app=web" {
		t.Errorf("GET /targets = %+v", list)
	}
	for _, key := range []string{`"load"`, `"readyPods"`, `"elu"`, `"queue"`, `"pods"`} {
		if !strings.Contains(body, key) {
			t.Errorf("GET /targets body lacks %s:\n%s", key, body)
		}
	}

	for _, tc := range []struct {
		name, method, path, body string
		wantCode                 int
		wantBody                 string // substring
	}{
		{"get one", http.MethodGet, "/targets/ns/web", "", 200, `"deployment": "web"`},
		{"get unknown", http.MethodGet, "/targets/ns/nope", "", 404, "unknown target ns/nope"},
		{"set load", http.MethodPut, "/targets/ns/web/load", "250", 200, `"load": 250`},
		{"set load with spaces", http.MethodPut, "/targets/ns/web/load", " 12.5\n", 200, `"load": 12.5`},
		{"set load exponent", http.MethodPut, "/targets/ns/web/load", "1e2", 200, `"load": 100`},
		{"load not a number", http.MethodPut, "/targets/ns/web/load", "fast", 400, `"fast" is not a number`},
		{"load JSON object", http.MethodPut, "/targets/ns/web/load", `{"rps":1}`, 400, "is not a number"},
		{"load negative", http.MethodPut, "/targets/ns/web/load", "-1", 400, "invalid value"},
		{"load NaN", http.MethodPut, "/targets/ns/web/load", "NaN", 400, "invalid value"},
		{"load Inf", http.MethodPut, "/targets/ns/web/load", "+Inf", 400, "invalid value"},
		{"load empty", http.MethodPut, "/targets/ns/web/load", "", 400, "empty body"},
		{"load too long", http.MethodPut, "/targets/ns/web/load", strings.Repeat("1", 300), 400, "longer than"},
		{"load unknown deployment", http.MethodPut, "/targets/ns/nope/load", "1", 404, "unknown target ns/nope"},
		{"load unknown namespace", http.MethodPut, "/targets/other/web/load", "1", 404, "unknown target other/web"},
		{"unknown target wins over bad body", http.MethodPut, "/targets/ns/nope/load", "x", 404, "unknown target"},
		{"load wrong method", http.MethodPost, "/targets/ns/web/load", "1", 405, ""},
		{"set queue", http.MethodPut, "/targets/ns/web/queue", "1000", 200, `"queue": 1000`},
		{"queue bad", http.MethodPut, "/targets/ns/web/queue", "many", 400, "not a number"},
		{"queue negative", http.MethodPut, "/targets/ns/web/queue", "-5", 400, "invalid value"},
		{"queue unknown", http.MethodPut, "/targets/ns/nope/queue", "5", 404, "unknown target"},
		{"unknown knob", http.MethodPut, "/targets/ns/web/speed", "5", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, base+tc.path, tc.body)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("%s %s %q: %d %q, want %d with %q", tc.method, tc.path, tc.body, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}

	// The accepted values are in effect for in-process users too.
	st := status(t, s, "ns", "web")
	if st.Load != 100 || st.Queue != 1000 {
		t.Errorf("after API calls: load %v queue %v, want 100 and 1000", st.Load, st.Queue)
	}
}
