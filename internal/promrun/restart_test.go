package promrun_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// TestRestartKeepsAddressAndData restarts Prometheus: nothing listens while it is down, it
// comes back on the same URL, and the samples scraped before the restart are still there.
func TestRestartKeepsAddressAndData(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	exp := startExporter(t)
	exp.SetGauge("elu_utilization", map[string]string{"namespace": "a", "pod": "p1"}, 0.5)
	srv := startPrometheus(t, ctx, promrun.Options{ScrapeInterval: time.Second, Targets: []promrun.Target{{Job: "fake", Address: exp.Addr()}}})
	if err := srv.WaitForSeries(ctx, `elu_utilization`, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a few samples
	countQ := `count_over_time(elu_utilization[1h])`
	before := float64(queryVector(t, ctx, srv, countQ)[0].Value)
	url := srv.URL()
	addr := strings.TrimPrefix(url, "http://")
	refused := false
	if err := srv.Restart(ctx, func() {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		refused = true
	}); err != nil {
		t.Fatal(err)
	}
	if !refused {
		t.Errorf("%s accepted connections while Prometheus was down", addr)
	}
	if srv.URL() != url {
		t.Errorf("URL after restart %s, before %s", srv.URL(), url)
	}
	vec := queryVector(t, ctx, srv, countQ)
	if len(vec) != 1 || float64(vec[0].Value) < before {
		t.Errorf("samples after restart %v, before %v: the data directory was not kept", vec, before)
	}
}
