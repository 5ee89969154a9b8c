package fakeexporter_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/internal/fakeexporter"
)

// scrape fetches the exposition text from url.
func scrape(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %s: %s", url, resp.Status, body)
	}
	return string(body)
}

func TestServeMetrics(t *testing.T) {
	e := fakeexporter.New()
	pod := map[string]string{"namespace": "a", "pod": "p1"}
	e.SetGauge("elu_utilization", pod, 0.25)
	e.SetGauge("elu_utilization", map[string]string{"pod": "p2", "namespace": "b"}, 0.5)
	e.SetGauge("elu_utilization", pod, 0.75) // overwrite
	e.AddCounter("requests_total", pod, 2)
	e.AddCounter("requests_total", pod, 3)
	e.SetGauge("no_labels", nil, 7)

	url, err := e.Start("")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer e.Close()
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/metrics") {
		t.Errorf("URL = %q, want http://127.0.0.1:<port>/metrics", url)
	}
	if want := "http://" + e.Addr() + "/metrics"; url != want {
		t.Errorf("URL = %q, Addr gives %q", url, want)
	}
	if _, err := e.Start(""); err == nil {
		t.Errorf("second Start: got nil error")
	}

	// Samples set after Start are served too.
	e.SetGauge("late_gauge", map[string]string{"x": "y"}, 1)

	body := scrape(t, url)
	for _, want := range []string{
		`elu_utilization{namespace="a",pod="p1"} 0.75`,
		`elu_utilization{namespace="b",pod="p2"} 0.5`,
		`requests_total{namespace="a",pod="p1"} 5`,
		`# TYPE requests_total counter`,
		`# TYPE elu_utilization gauge`,
		`no_labels 7`,
		`late_gauge{x="y"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "go_goroutines") {
		t.Errorf("exposition contains default Go collector metrics:\n%s", body)
	}
}

func TestMisusePanics(t *testing.T) {
	tests := []struct {
		name string
		fn   func(e *fakeexporter.Exporter)
	}{
		{"different label names", func(e *fakeexporter.Exporter) {
			e.SetGauge("m", map[string]string{"a": "1"}, 1)
			e.SetGauge("m", map[string]string{"b": "1"}, 1)
		}},
		{"extra label", func(e *fakeexporter.Exporter) {
			e.AddCounter("c_total", map[string]string{"a": "1"}, 1)
			e.AddCounter("c_total", map[string]string{"a": "1", "b": "2"}, 1)
		}},
		{"gauge then counter", func(e *fakeexporter.Exporter) {
			e.SetGauge("m", nil, 1)
			e.AddCounter("m", nil, 1)
		}},
		{"negative counter add", func(e *fakeexporter.Exporter) {
			e.AddCounter("c_total", nil, -1)
		}},
		{"invalid metric name", func(e *fakeexporter.Exporter) {
			e.SetGauge("bad name", nil, 1)
		}},
		{"invalid label name", func(e *fakeexporter.Exporter) {
			e.SetGauge("m", map[string]string{"bad.label": "x"}, 1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			tc.fn(fakeexporter.New())
		})
	}
}

func TestCloseReleasesPort(t *testing.T) {
	e := fakeexporter.New()
	if err := e.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if _, err := e.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	addr := e.Addr()
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("port %s still open after Close", addr)
	}
}
