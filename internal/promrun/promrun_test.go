package promrun_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/promql-adapter/promql-adapter/internal/fakeexporter"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// startExporter starts a fakeexporter and closes it at the end of the test.
func startExporter(t *testing.T) *fakeexporter.Exporter {
	t.Helper()
	exp := fakeexporter.New()
	if _, err := exp.Start(""); err != nil {
		t.Fatalf("start exporter: %v", err)
	}
	t.Cleanup(func() { _ = exp.Close() })
	return exp
}

// startPrometheus starts Prometheus with opts and stops it at the end of the test.
// A missing binary fails the test (with the "run make deps" hint), it never skips.
func startPrometheus(t *testing.T, ctx context.Context, opts promrun.Options) *promrun.Server {
	t.Helper()
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	srv, err := promrun.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop prometheus: %v", err)
		}
	})
	return srv
}

// queryVector runs an instant query that must return a vector.
func queryVector(t *testing.T, ctx context.Context, srv *promrun.Server, q string) model.Vector {
	t.Helper()
	v, _, _, err := srv.API().Query(ctx, q, time.Time{})
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("query %q: got %s, want vector", q, v.Type())
	}
	return vec
}

func TestScrapeQueryRateAndStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	exp := startExporter(t)
	podLabels := map[string]string{"namespace": "a", "pod": "p1"}
	exp.SetGauge("elu_utilization", podLabels, 0.25)
	exp.AddCounter("test_requests_total", podLabels, 1)

	begin := time.Now()
	srv := startPrometheus(t, ctx, promrun.Options{
		ScrapeInterval: time.Second,
		Targets: []promrun.Target{{
			Job:     "fake",
			Address: exp.Addr(),
			// honor_labels: the exporter's namespace wins over the target's.
			Labels: map[string]string{"namespace": "from-target", "cluster": "test"},
		}},
	})
	ready := time.Since(begin)
	t.Logf("prometheus start-to-ready: %v (%s)", ready.Round(time.Millisecond), srv.URL())

	const series = `elu_utilization{namespace="a",pod="p1"}`
	if err := srv.WaitForSeries(ctx, series, 1); err != nil {
		t.Fatalf("wait for series: %v", err)
	}
	firstSample := time.Since(begin)
	t.Logf("start to first queryable sample: %v (%v after ready)", firstSample.Round(time.Millisecond), (firstSample - ready).Round(time.Millisecond))

	vec := queryVector(t, ctx, srv, series)
	if len(vec) != 1 {
		t.Fatalf("query %q: got %d samples, want 1: %v", series, len(vec), vec)
	}
	if got := float64(vec[0].Value); got != 0.25 {
		t.Errorf("elu_utilization = %v, want 0.25", got)
	}
	for name, want := range map[model.LabelName]model.LabelValue{
		"namespace": "a", "pod": "p1", "job": "fake", "cluster": "test",
	} {
		if got := vec[0].Metric[name]; got != want {
			t.Errorf("label %s = %q, want %q (series %v)", name, got, want, vec[0].Metric)
		}
	}

	// The counter keeps growing; rate over 5s turns positive once two scrapes
	// with different values are in the window.
	const rateQuery = `rate(test_requests_total{namespace="a",pod="p1"}[5s])`
	rateStart := time.Now()
	for {
		exp.AddCounter("test_requests_total", podLabels, 1)
		vec := queryVector(t, ctx, srv, rateQuery)
		if len(vec) == 1 && vec[0].Value > 0 {
			t.Logf("rate positive after %v: %v", time.Since(rateStart).Round(time.Millisecond), vec[0].Value)
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never became positive: last %v", rateQuery, vec)
		case <-time.After(250 * time.Millisecond):
		}
	}

	if err := exp.Close(); err != nil {
		t.Errorf("close exporter: %v", err)
	}
	stopStart := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop prometheus: %v", err)
	}
	t.Logf("prometheus stop took %v", time.Since(stopStart).Round(time.Millisecond))
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	for name, rawURL := range map[string]string{"prometheus": srv.URL(), "exporter": "http://" + exp.Addr()} {
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatalf("parse %s URL: %v", name, err)
		}
		if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
			_ = conn.Close()
			t.Errorf("%s port %s still open after stop", name, u.Host)
		}
	}
}

// alertSink is a minimal Alertmanager stand-in that records the names of alerts
// POSTed to /api/v2/alerts.
type alertSink struct {
	url    string
	alerts chan string
}

func startAlertSink(t *testing.T) *alertSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	sink := &alertSink{url: "http://" + ln.Addr().String(), alerts: make(chan string, 100)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/alerts", func(w http.ResponseWriter, r *http.Request) {
		var alerts []struct {
			Labels map[string]string `json:"labels"`
		}
		if err := json.NewDecoder(r.Body).Decode(&alerts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range alerts {
			select {
			case sink.alerts <- a.Labels["alertname"]:
			default:
			}
		}
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return sink
}

func TestReloadRulesAndAlerting(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	exp1 := startExporter(t)
	exp1.SetGauge("reload_probe", map[string]string{"pod": "one"}, 1)
	exp2 := startExporter(t)
	exp2.SetGauge("reload_probe", map[string]string{"pod": "two"}, 2)
	sink := startAlertSink(t)

	rules := filepath.Join(t.TempDir(), "rules.yml")
	const ruleYAML = `groups:
- name: probe
  rules:
  - record: reload_probe:count
    expr: count(reload_probe)
  - alert: ProbeHigh
    expr: reload_probe > 1
`
	if err := os.WriteFile(rules, []byte(ruleYAML), 0o644); err != nil {
		t.Fatalf("write rules: %v", err)
	}
	opts := promrun.Options{
		Targets:         []promrun.Target{{Job: "one", Address: exp1.Addr()}},
		RuleFiles:       []string{rules},
		AlertmanagerURL: sink.url,
	}
	srv := startPrometheus(t, ctx, opts)
	if err := srv.WaitForSeries(ctx, "reload_probe:count == 1", 1); err != nil {
		t.Fatalf("wait for first target's recorded count: %v", err)
	}

	// Rewrite the config with both targets, as a caller would, then reload.
	opts.Targets = append(opts.Targets, promrun.Target{Job: "two", Address: exp2.Addr()})
	newCfg, err := promrun.RenderConfig(opts)
	if err != nil {
		t.Fatalf("render config: %v", err)
	}
	if err := os.WriteFile(srv.ConfigPath(), newCfg, 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	if err := srv.Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if err := srv.WaitForSeries(ctx, "reload_probe", 2); err != nil {
		t.Fatalf("wait for both targets after reload: %v", err)
	}
	if err := srv.WaitForSeries(ctx, "reload_probe:count == 2", 1); err != nil {
		t.Fatalf("wait for recorded count 2: %v", err)
	}
	select {
	case name := <-sink.alerts:
		if name != "ProbeHigh" {
			t.Errorf("alert %q received, want ProbeHigh", name)
		}
	case <-ctx.Done():
		t.Fatalf("no alert reached the alertmanager URL %s", sink.url)
	}

	// A broken config must make Reload fail.
	if err := os.WriteFile(srv.ConfigPath(), []byte("scrape_configs: [oops"), 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	if err := srv.Reload(ctx); err == nil {
		t.Errorf("Reload with a broken config: got nil error")
	}
}

func TestStartErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	tests := []struct {
		name    string
		opts    promrun.Options
		env     string
		wantErr string
	}{
		{
			name:    "explicit binary missing",
			opts:    promrun.Options{Binary: "/nonexistent/prometheus"},
			wantErr: "make deps",
		},
		{
			name:    "env binary missing",
			env:     "/nonexistent/prometheus-from-env",
			wantErr: "make deps",
		},
		{
			name:    "unknown flag shows log tail",
			opts:    promrun.Options{ExtraArgs: []string{"--no-such-flag"}},
			wantErr: "no-such-flag",
		},
		{
			name:    "target without address",
			opts:    promrun.Options{Targets: []promrun.Target{{Job: "x"}}},
			wantErr: "empty address",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(promrun.EnvBinary, tc.env)
			}
			if tc.opts.WorkDir == "" {
				tc.opts.WorkDir = t.TempDir()
			}
			srv, err := promrun.Start(ctx, tc.opts)
			if err == nil {
				_ = srv.Stop()
				t.Fatalf("Start: got nil error, want one containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Start error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	v, err := promrun.Version("")
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v == "" || !strings.ContainsAny(v[:1], "0123456789") {
		t.Errorf("Version = %q, want a version number", v)
	}
	t.Logf("prometheus version %s", v)

	if _, err := promrun.Version("/nonexistent/prometheus"); err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("Version(missing) error = %v, want one mentioning make deps", err)
	}
}
