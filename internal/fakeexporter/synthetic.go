package fakeexporter

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Synthetic serves generated series without a registry, cheaply enough for Prometheus to scrape
// a million of them: in each namespace bench-<n>, for each pod name web-<i>, a gauge
// bench_gauge{namespace,pod} = (i%100)/100 and counters http_requests_total{namespace,pod,path}
// growing by (i%7+1) per second; and queues gauges bench_queue_depth{queue="q-<j>"} = j.
type Synthetic struct {
	Namespaces int // bench-0 ... bench-<Namespaces-1>
	Pods       int // pod names per namespace: web-0 ... web-<Pods-1>
	Paths      int // http_requests_total series per pod
	Queues     int // bench_queue_depth series
}

// SyntheticFor lays out about series series: 1,000 pod names per namespace, four request counters
// and one gauge per pod (so http_requests_total holds 80% of the series), and ten queues.
func SyntheticFor(series int) Synthetic {
	return Synthetic{Namespaces: max(1, series/5000), Pods: 1000, Paths: 4, Queues: 10}
}

// Series is how many series s serves.
func (s Synthetic) Series() int { return s.Namespaces*s.Pods*(1+s.Paths) + s.Queues }

// GaugeValue is bench_gauge's value for pod web-<i>.
func GaugeValue(i int) float64 { return float64(i%100) / 100 }

// ServeHTTP writes every series in the text exposition format.
func (s Synthetic) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	bw := bufio.NewWriterSize(w, 256<<10)
	now := time.Now().Unix()
	var line []byte
	_, _ = bw.WriteString("# TYPE bench_gauge gauge\n")
	for n := range s.Namespaces {
		for i := range s.Pods {
			line = append(line[:0], `bench_gauge{namespace="bench-`...)
			line = strconv.AppendInt(line, int64(n), 10)
			line = append(line, `",pod="web-`...)
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, `"} `...)
			line = strconv.AppendFloat(line, GaugeValue(i), 'g', -1, 64)
			line = append(line, '\n')
			_, _ = bw.Write(line)
		}
	}
	_, _ = bw.WriteString("# TYPE http_requests_total counter\n")
	for n := range s.Namespaces {
		for i := range s.Pods {
			for p := range s.Paths {
				line = append(line[:0], `http_requests_total{namespace="bench-`...)
				line = strconv.AppendInt(line, int64(n), 10)
				line = append(line, `",path="/p`...)
				line = strconv.AppendInt(line, int64(p), 10)
				line = append(line, `",pod="web-`...)
				line = strconv.AppendInt(line, int64(i), 10)
				line = append(line, `"} `...)
				line = strconv.AppendInt(line, now*int64(i%7+1), 10)
				line = append(line, '\n')
				_, _ = bw.Write(line)
			}
		}
	}
	_, _ = bw.WriteString("# TYPE bench_queue_depth gauge\n")
	for j := range s.Queues {
		fmt.Fprintf(bw, "bench_queue_depth{queue=\"q-%d\"} %d\n", j, j)
	}
	_ = bw.Flush()
}

// StartSynthetic serves s at /metrics on a free loopback port; it returns the host:port and a stop function.
func StartSynthetic(s Synthetic) (string, func() error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("fakeexporter: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	stop := func() error {
		if err := srv.Close(); err != nil {
			return err
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	return ln.Addr().String(), stop, nil
}
