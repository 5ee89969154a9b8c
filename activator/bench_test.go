package activator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"
)

// The activator's own cost, with an httptest upstream and no cluster: the
// cluster-free part of make bench-activator.

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

func firstByte(c *http.Client, url, host string) (time.Duration, error) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b [1]byte
	_, _ = resp.Body.Read(b[:])
	d := time.Since(start)
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return d, fmt.Errorf("status %d", resp.StatusCode)
	}
	return d, nil
}

// BenchmarkColdStart: arrival → first byte of a request to a sleeping target whose
// address becomes Ready `delay` after the wake; reports the activator's added cost.
func BenchmarkColdStart(b *testing.B) {
	for _, delay := range []time.Duration{0, time.Second} {
		b.Run(fmt.Sprintf("delay=%s", delay), func(b *testing.B) {
			u := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
			defer u.Close()
			addr := u.Listener.Addr().String()
			var added []time.Duration
			for i := 0; i < b.N; i++ {
				f := newFake(web)
				w := &fakeWaker{onWake: func() { time.AfterFunc(delay, func() { f.set(addr) }) }}
				ctx, cancel := context.WithCancel(context.Background())
				s := httptest.NewServer(NewHandler(ctx, f, w, nil, Options{}))
				d, err := firstByte(s.Client(), s.URL, "web.example")
				s.Close()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				added = append(added, d-delay)
			}
			b.ReportMetric(float64(percentile(added, .5).Microseconds()), "added-p50-µs")
			b.ReportMetric(float64(percentile(added, .99).Microseconds()), "added-p99-µs")
		})
	}
}

// BenchmarkWarm: p50/p99 and throughput at c=20, through the activator and straight to the upstream, same run.
func BenchmarkWarm(b *testing.B) {
	u := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer u.Close()
	f := newFake(web)
	f.set(u.Listener.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := httptest.NewServer(NewHandler(ctx, f, &fakeWaker{}, nil, Options{}))
	defer s.Close()
	for _, tc := range []struct{ name, url, host string }{{"direct", u.URL, ""}, {"activator", s.URL, "web.example"}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 20}}
			const conc = 20
			var warm sync.WaitGroup // open the connections first, on both hops
			for i := 0; i < conc; i++ {
				warm.Add(1)
				go func() { defer warm.Done(); _, _ = firstByte(c, tc.url, tc.host) }()
			}
			warm.Wait()
			b.ResetTimer()
			var mu sync.Mutex
			var lat []time.Duration
			var wg sync.WaitGroup
			next := make(chan struct{}, b.N)
			for i := 0; i < b.N; i++ {
				next <- struct{}{}
			}
			close(next)
			start := time.Now()
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						d, err := firstByte(c, tc.url, tc.host)
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.ReportMetric(float64(percentile(lat, .5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(lat, .99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(len(lat))/el.Seconds(), "req/s")
		})
	}
}
