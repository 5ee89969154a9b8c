package activator

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var web = Target{Namespace: "shop", HPA: "web", Service: "web"}

// fakeBackends is a routing table with one route and Ready addresses set by the test.
type fakeBackends struct {
	mu    sync.Mutex
	table *Table
	addrs []string
	err   error
	ch    chan struct{}
}

func newFake(t Target) *fakeBackends {
	tb, _ := NewTable([]Route{{Host: "web.example", Target: t}}, nil)
	return &fakeBackends{table: tb, ch: make(chan struct{})}
}

func (f *fakeBackends) Table() *Table { return f.table }
func (f *fakeBackends) Ready(Target) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.addrs...), f.err
}
func (f *fakeBackends) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch
}
func (f *fakeBackends) set(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = addrs
	close(f.ch)
	f.ch = make(chan struct{})
}

// fakeWaker counts wakes and runs onWake (e.g. making an address Ready).
type fakeWaker struct {
	calls  atomic.Int32
	onWake func()
	once   sync.Once
}

func (w *fakeWaker) Wake(context.Context, Target) error {
	w.calls.Add(1)
	if w.onWake != nil {
		w.once.Do(w.onWake)
	}
	return nil
}

// upstream is an httptest server that records the order of the requests it got.
type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	got   []string
	hdr   []http.Header
	block chan struct{}
}

func newUpstream(t *testing.T, name string) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.got = append(u.got, r.URL.Query().Get("n"))
		u.hdr = append(u.hdr, r.Header.Clone())
		u.mu.Unlock()
		fmt.Fprintf(w, "%s %s %s", name, r.Host, b)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }
func (u *upstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

func newActivator(t *testing.T, b Backends, w Waker, o Options) (*httptest.Server, *Metrics) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m := NewMetrics(prometheus.NewRegistry())
	s := httptest.NewUnstartedServer(NewHandler(ctx, b, w, m, o))
	s.Start()
	t.Cleanup(s.Close)
	return s, m
}

func do(t *testing.T, c *http.Client, method, url, host, body string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestUnknownHostIs404NamingIt: the 404 names the host asked for, and no other route (review N5).
func TestUnknownHostIs404NamingIt(t *testing.T) {
	b := newFake(web)
	b.table, _ = NewTable([]Route{{Host: "web.example", Target: web}, {Host: "admin.tenant-b.example", PathPrefix: "/internal", Target: web}}, nil)
	s, _ := newActivator(t, b, &fakeWaker{}, Options{})
	code, body, _ := do(t, s.Client(), "GET", s.URL+"/x", "nope.example", "")
	if code != 404 || !strings.Contains(body, `"nope.example"`) {
		t.Fatalf("got %d %q, want 404 naming the host", code, body)
	}
	for _, other := range []string{"web.example", "tenant-b", "/internal"} {
		if strings.Contains(body, other) {
			t.Fatalf("404 body %q names another route (%s)", body, other)
		}
	}
}

func TestMissingServiceIs502WithReason(t *testing.T) {
	b := newFake(web)
	b.err = &ServiceError{Reason: "service shop/web (routed by HPA web) does not exist"}
	s, m := newActivator(t, b, &fakeWaker{}, Options{})
	code, body, _ := do(t, s.Client(), "GET", s.URL+"/", "web.example", "")
	if code != 502 || !strings.Contains(body, "shop/web") || !strings.Contains(body, "does not exist") {
		t.Fatalf("got %d %q, want 502 with the reason", code, body)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.requests.WithLabelValues("shop", "web", "502")) == 1 })
}

func TestWarmSpreadsEvenlyAndRetriesRefused(t *testing.T) {
	a, c := newUpstream(t, "a"), newUpstream(t, "c")
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close() // refuses connections
	b := newFake(web)
	b.set(a.addr(), deadAddr, c.addr())
	w := &fakeWaker{}
	s, m := newActivator(t, b, w, Options{})
	for i := 0; i < 60; i++ {
		code, body, _ := do(t, s.Client(), "GET", fmt.Sprintf("%s/?n=%d", s.URL, i), "web.example", "")
		if code != 200 {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	na, nc := len(a.requests()), len(c.requests())
	if na+nc != 60 || na < 20 || nc < 20 {
		t.Fatalf("spread a=%d c=%d, want 60 in all, each at least a third", na, nc)
	}
	if w.calls.Load() != 0 {
		t.Fatalf("woke an awake target %d times", w.calls.Load())
	}
	// Counted once the handler returns, just after the client has its answer.
	waitFor(t, func() bool { return testutil.ToFloat64(m.requests.WithLabelValues("shop", "web", "200")) == 60 })
}

func TestHeldRequestsWakeAtOnceAndGoInArrivalOrder(t *testing.T) {
	u := newUpstream(t, "pod")
	b := newFake(web)
	ready := make(chan struct{})
	w := &fakeWaker{onWake: func() { close(ready) }}
	s, m := newActivator(t, b, w, Options{})
	var mu sync.Mutex
	var wrote []string
	s.Config.Handler.(*Handler).wrote = func(r *http.Request) {
		mu.Lock()
		wrote = append(wrote, r.URL.Query().Get("n"))
		mu.Unlock()
	}
	const n = 30
	var wg sync.WaitGroup
	results := make([]string, n)
	for i := 0; i < n; i++ {
		if i == 1 {
			<-ready // the first held request woke the target, before any other arrived
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			code, body, _ := do(t, s.Client(), "POST", fmt.Sprintf("%s/?n=%d", s.URL, i), "web.example", fmt.Sprint("body", i))
			results[i] = fmt.Sprint(code, " ", body)
		}(i)
		// Wait until it is held, so arrival order is known.
		waitFor(t, func() bool { return testutil.ToFloat64(m.held.WithLabelValues("shop", "web")) == float64(i+1) })
	}
	if len(u.requests()) != 0 {
		t.Fatal("forwarded before any address was Ready")
	}
	b.set(u.addr())
	wg.Wait()
	for i, r := range results {
		if want := fmt.Sprintf("200 pod web.example body%d", i); r != want {
			t.Fatalf("request %d: got %q, want %q", i, r, want)
		}
	}
	// Sent in arrival order (the upstream's goroutines may then run in any order).
	mu.Lock()
	defer mu.Unlock()
	if len(wrote) != n || len(u.requests()) != n {
		t.Fatalf("sent %d, upstream got %d, want %d each", len(wrote), len(u.requests()), n)
	}
	for i, g := range wrote {
		if g != fmt.Sprint(i) {
			t.Fatalf("sent in order %v, want arrival order", wrote)
		}
	}
	if c := w.calls.Load(); c != 1 {
		t.Fatalf("wake called %d times, want 1", c)
	}
	if c := testutil.CollectAndCount(m.coldStart); c != 1 {
		t.Fatalf("cold-start series %d, want 1", c)
	}
}

func TestQueueFullIs503AtOnce(t *testing.T) {
	b := newFake(web)
	s, _ := newActivator(t, b, &fakeWaker{}, Options{MaxHeld: 2, MaxWait: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL, nil)
		req.Host = "web.example"
		go func() {
			if resp, err := s.Client().Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	h := s.Config.Handler.(*Handler)
	waitFor(t, func() bool {
		h.holds.mu.Lock()
		defer h.holds.mu.Unlock()
		q := h.holds.q[web]
		return q != nil && len(q.waiters) == 2
	})
	start := time.Now()
	code, body, hdr := do(t, s.Client(), "GET", s.URL, "web.example", "")
	if code != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(body, "queue is full") {
		t.Fatalf("got %d %q Retry-After=%q, want 503 queue full with Retry-After", code, body, hdr.Get("Retry-After"))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("queue full answered after %s, want at once", d)
	}
}

func TestHeldBodiesAreBounded(t *testing.T) {
	b := newFake(web)
	s, _ := newActivator(t, b, &fakeWaker{}, Options{MaxHeldBytes: 10, MaxWait: time.Second})
	code, body, _ := do(t, s.Client(), "POST", s.URL, "web.example", strings.Repeat("x", 11))
	if code != 503 || !strings.Contains(body, "10 bytes") {
		t.Fatalf("got %d %q, want 503 naming the byte budget", code, body)
	}
}

func TestMaxWaitIs503WithRetryAfter(t *testing.T) {
	b := newFake(web)
	s, m := newActivator(t, b, &fakeWaker{}, Options{MaxWait: 300 * time.Millisecond, RetryAfter: 7 * time.Second})
	code, body, hdr := do(t, s.Client(), "GET", s.URL, "web.example", "")
	if code != 503 || hdr.Get("Retry-After") != "7" || !strings.Contains(body, "within 300ms") {
		t.Fatalf("got %d %q Retry-After=%q, want 503 with Retry-After 7", code, body, hdr.Get("Retry-After"))
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.requests.WithLabelValues("shop", "web", "503")) == 1 })
}

func TestReadyButRefusingUntilMaxWaitIs503(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	b := newFake(web)
	b.set(addr) // Ready in the EndpointSlice, process not listening (still booting)
	s, _ := newActivator(t, b, &fakeWaker{}, Options{MaxWait: 300 * time.Millisecond})
	code, body, hdr := do(t, s.Client(), "GET", s.URL, "web.example", "")
	if code != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(body, "accepts connections") {
		t.Fatalf("got %d %q, want 503 with Retry-After", code, body)
	}
}

func TestReadyButBootingIsServedOnceItListens(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	b := newFake(web)
	b.set(addr)
	s, _ := newActivator(t, b, &fakeWaker{}, Options{MaxWait: 10 * time.Second})
	go func() {
		time.Sleep(300 * time.Millisecond) // the app's boot
		l2, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "booted") })}
		t.Cleanup(func() { srv.Close() })
		_ = srv.Serve(l2)
	}()
	code, body, _ := do(t, s.Client(), "GET", s.URL, "web.example", "")
	if code != 200 || body != "booted" {
		t.Fatalf("got %d %q, want the app's answer once it listens", code, body)
	}
}

func TestCancelledClientIsNeverForwarded(t *testing.T) {
	u := newUpstream(t, "pod")
	b := newFake(web)
	s, m := newActivator(t, b, &fakeWaker{}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/?n=gone", nil)
	req.Host = "web.example"
	errc := make(chan error, 1)
	go func() {
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return testutil.ToFloat64(m.held.WithLabelValues("shop", "web")) == 1 })
	cancel()
	<-errc
	waitFor(t, func() bool { return testutil.ToFloat64(m.held.WithLabelValues("shop", "web")) == 0 })
	b.set(u.addr())
	code, _, _ := do(t, s.Client(), "GET", s.URL+"/?n=next", "web.example", "")
	if code != 200 {
		t.Fatalf("next request: %d", code)
	}
	if got := u.requests(); len(got) != 1 || got[0] != "next" {
		t.Fatalf("upstream got %v, want only the request that stayed", got)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.requests.WithLabelValues("shop", "web", "499")) == 1 })
}

// TestProxyHeaders: hop-by-hop headers are dropped; X-Forwarded-* from a client are kept only when it
// is a trusted proxy, else replaced by our own (review N5).
func TestProxyHeaders(t *testing.T) {
	for _, tc := range []struct {
		name                string
		o                   Options
		wantXFF, wantXFHost string
		wantProto           string
	}{
		{"untrusted client: its X-Forwarded-* replaced", Options{}, "127.0.0.1", "web.example", "http"},
		{"client outside the trusted CIDRs: replaced", Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "127.0.0.1", "web.example", "http"},
		{"trusted proxy: its chain appended to, Host and Proto kept", Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, "203.0.113.9, 127.0.0.1", "spoofed.example", "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, "pod")
			b := newFake(web)
			b.set(u.addr())
			s, _ := newActivator(t, b, &fakeWaker{}, tc.o)
			req, _ := http.NewRequest("GET", s.URL, nil)
			req.Host = "web.example"
			req.Header.Set("Connection", "X-Secret")
			req.Header.Set("X-Secret", "hop")
			req.Header.Set("Keep-Alive", "timeout=5")
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			req.Header.Set("X-Forwarded-Host", "spoofed.example")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("Forwarded", "for=203.0.113.9")
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := u.hdr[0]
			if h.Get("X-Secret") != "" || h.Get("Keep-Alive") != "" {
				t.Fatalf("hop-by-hop headers forwarded: %v", h)
			}
			if xff := h.Get("X-Forwarded-For"); xff != tc.wantXFF {
				t.Fatalf("X-Forwarded-For %q, want %q", xff, tc.wantXFF)
			}
			if h.Get("X-Forwarded-Host") != tc.wantXFHost || h.Get("X-Forwarded-Proto") != tc.wantProto {
				t.Fatalf("X-Forwarded-Host/Proto %q/%q, want %q/%q", h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"), tc.wantXFHost, tc.wantProto)
			}
			if f := h.Get("Forwarded"); f != "" && tc.wantXFF == "127.0.0.1" {
				t.Fatalf("Forwarded %q from an untrusted client kept", f)
			}
		})
	}
}

func TestH2C(t *testing.T) {
	u := newUpstream(t, "pod")
	b := newFake(web)
	b.set(u.addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := NewServer(NewHandler(ctx, b, &fakeWaker{}, nil, Options{}))
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &p}}
	req, _ := http.NewRequest("GET", "http://"+l.Addr().String()+"/", nil)
	req.Host = "web.example"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.HasPrefix(string(body), "pod") {
		t.Fatalf("got %s %d %q, want HTTP/2 200 from the pod", resp.Proto, resp.StatusCode, body)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestColdStartEndsAtConnection: an address Ready before its process listens (kwok, or a pod without a
// readiness probe) does not end the cold start; the histogram ends when a held request gets a connection.
func TestColdStartEndsAtConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // Ready, but nothing listens: dials are refused
	const boot = 300 * time.Millisecond
	b := newFake(web)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up") })}
	defer srv.Close()
	w := &fakeWaker{onWake: func() {
		b.set(addr)
		time.AfterFunc(boot, func() {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			go func() { _ = srv.Serve(l) }()
		})
	}}
	s, m := newActivator(t, b, w, Options{MaxWait: 30 * time.Second})
	if code, body, _ := do(t, s.Client(), "GET", s.URL, "web.example", ""); code != 200 || body != "up" {
		t.Fatalf("got %d %q, want 200 up", code, body)
	}
	var sum float64
	waitFor(t, func() bool {
		mf := &dto.Metric{}
		if err := m.coldStart.WithLabelValues("shop", "web").(prometheus.Histogram).Write(mf); err != nil {
			t.Fatal(err)
		}
		sum = mf.GetHistogram().GetSampleSum()
		return mf.GetHistogram().GetSampleCount() == 1
	})
	if sum < boot.Seconds() {
		t.Fatalf("cold start observed %.3fs, before the process listened (%s after its address was Ready)", sum, boot)
	}
}

// stallingBody is a client that sends n bytes of its body, then stops sending (until stop or gone is closed).
type stallingBody struct {
	n    int
	stop <-chan struct{}
	gone <-chan struct{} // the client gives up (nil: never)
}

func (s *stallingBody) Read(p []byte) (int, error) {
	if s.n == 0 {
		select {
		case <-s.stop:
		case <-s.gone:
		}
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), s.n) // whatever p holds: a stalled body never reaches an upstream
	s.n -= k
	return k, nil
}

// reply is a client's outcome.
type reply struct {
	code       int
	retryAfter string
	body       string
	err        error
}

// send POSTs body to host through s in the background, with a 20 s bound (so no test hangs);
// contentLength -1 sends it chunked.
func send(ctx context.Context, s *httptest.Server, host string, body io.Reader, contentLength int64) <-chan reply {
	out := make(chan reply, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/", body)
		req.Host = host
		req.ContentLength = contentLength
		var r reply
		resp, err := s.Client().Do(req)
		if err != nil {
			r.err = err
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r.code, r.retryAfter, r.body = resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
		}
		out <- r
	}()
	return out
}

// heldBytes is what the activator has reserved for held bodies, in all.
func heldBytes(h *Handler) int64 {
	h.holds.mu.Lock()
	defer h.holds.mu.Unlock()
	return h.holds.total
}

// TestStallingBodiesAreBounded (review N2): with one slot, 20 clients that each send 1 MiB less a byte
// and stall: 2..20 get 503 with Retry-After at once (their bodies are never read), the one held gets
// 503 by max-wait + 1 s, and the activator's heap does not grow by the 20 bodies.
func TestStallingBodiesAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name          string
		contentLength int64
	}{
		{"chunked", -1},
		{"content-length", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFake(web)
			o := Options{MaxHeld: 1, MaxHeldBytes: 1 << 20, MaxWait: 2 * time.Second}
			s, m := newActivator(t, b, &fakeWaker{}, o)
			h := s.Config.Handler.(*Handler)
			stop := make(chan struct{})
			t.Cleanup(func() { close(stop) })
			runtime.GC()
			var before, during runtime.MemStats
			runtime.ReadMemStats(&before)

			sent := time.Now()
			first := send(context.Background(), s, "web.example", &stallingBody{n: 1<<20 - 1, stop: stop}, tc.contentLength)
			deadline := time.Now().Add(time.Second)
			for testutil.ToFloat64(m.held.WithLabelValues("shop", "web")) != 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			var rest []<-chan reply
			for i := 1; i < 20; i++ {
				rest = append(rest, send(context.Background(), s, "web.example", &stallingBody{n: 1<<20 - 1, stop: stop}, tc.contentLength))
			}
			time.Sleep(500 * time.Millisecond)
			for i, c := range rest {
				select {
				case r := <-c:
					if r.err != nil || r.code != 503 || r.retryAfter == "" || !strings.Contains(r.body, "queue is full") {
						t.Errorf("request %d: %d Retry-After %q %q %v; want 503 queue full with Retry-After", i+2, r.code, r.retryAfter, r.body, r.err)
					}
				default:
					t.Errorf("request %d: no answer within 500ms with the queue full", i+2)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&during)
			if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 6<<20 {
				t.Errorf("heap in use grew by %d MiB with one 1 MiB body held", grew>>20)
			}
			select {
			case r := <-first:
				if r.err != nil || r.code != 503 || r.retryAfter == "" || !strings.Contains(r.body, "body") {
					t.Errorf("stalled held request: %d Retry-After %q %q %v; want 503 naming the body, with Retry-After", r.code, r.retryAfter, r.body, r.err)
				}
			case <-time.After(time.Until(sent.Add(o.MaxWait + time.Second))):
				t.Fatalf("stalled held request: no answer by max-wait + 1s")
			}
			waitFor(t, func() bool { return heldBytes(h) == 0 })
		})
	}
}

// TestHeldBodiesGlobalBudget: bodies held for all targets share --max-held-bytes-total; a body that
// does not fit gets 503 at once (declared or chunked), and a client that leaves gives its bytes back.
func TestHeldBodiesGlobalBudget(t *testing.T) {
	a, bb, c := web, Target{Namespace: "shop", HPA: "b", Service: "b"}, Target{Namespace: "shop", HPA: "c", Service: "c"}
	tb, _ := NewTable([]Route{{Host: "a.example", Target: a}, {Host: "b.example", Target: bb}, {Host: "c.example", Target: c}}, nil)
	b := &fakeBackends{table: tb, ch: make(chan struct{})}
	u := newUpstream(t, "pod")
	s, m := newActivator(t, b, &fakeWaker{}, Options{MaxHeldBytes: 2 << 20, MaxHeldBytesTotal: 3 << 20, MaxWait: 10 * time.Second})
	h := s.Config.Handler.(*Handler)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })

	actx, leave := context.WithCancel(context.Background())
	defer leave()
	ra := send(actx, s, "a.example", &stallingBody{n: 1, stop: stop, gone: actx.Done()}, 2<<20)
	bctx, leaveB := context.WithCancel(context.Background())
	defer leaveB()
	rb := send(bctx, s, "b.example", &stallingBody{n: 1, stop: stop, gone: bctx.Done()}, 1<<20)
	waitFor(t, func() bool { return heldBytes(h) == 3<<20 })

	for _, tc := range []struct {
		name string
		body io.Reader
		cl   int64
	}{
		{"declared", strings.NewReader("x"), 1},
		{"chunked", &stallingBody{n: 1 << 20, stop: stop}, -1},
	} {
		start := time.Now()
		r := <-send(context.Background(), s, "c.example", tc.body, tc.cl)
		if r.err != nil || r.code != 503 || r.retryAfter == "" || !strings.Contains(r.body, "3145728 bytes") {
			t.Errorf("%s: %d Retry-After %q %q %v; want 503 naming the 3145728 bytes held in all", tc.name, r.code, r.retryAfter, r.body, r.err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: answered after %s, want at once", tc.name, d)
		}
	}

	leave() // a's client goes away: its 2 MiB are free again
	if r := <-ra; r.err == nil {
		t.Fatalf("a: got %d, want the client's own cancellation", r.code)
	}
	waitFor(t, func() bool { return heldBytes(h) == 1<<20 })
	rc := send(context.Background(), s, "c.example", strings.NewReader(strings.Repeat("y", 2<<20)), 2<<20)
	waitFor(t, func() bool { return testutil.ToFloat64(m.held.WithLabelValues("shop", "c")) == 1 })
	b.set(u.addr())
	if r := <-rc; r.err != nil || r.code != 200 || !strings.HasPrefix(r.body, "pod c.example yyy") {
		t.Fatalf("c after a left: %d %.40q %v; want the upstream's answer", r.code, r.body, r.err)
	}
	leaveB()
	<-rb
	waitFor(t, func() bool { return heldBytes(h) == 0 })
}

// TestHeldRequestsDrainAfterCancel (review N3): once the handler's context ends (the process is shutting
// down), a held request is still forwarded when its target gets a Ready address, and a new request is not
// queued behind a dead queue.
func TestHeldRequestsDrainAfterCancel(t *testing.T) {
	u := newUpstream(t, "pod")
	b := newFake(web)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMetrics(prometheus.NewRegistry())
	s := httptest.NewServer(NewHandler(ctx, b, &fakeWaker{}, m, Options{MaxWait: 30 * time.Second}))
	defer s.Close()
	held := send(context.Background(), s, "web.example", strings.NewReader("held"), 4)
	waitFor(t, func() bool { return testutil.ToFloat64(m.held.WithLabelValues("shop", "web")) == 1 })
	cancel()
	time.Sleep(100 * time.Millisecond) // the wake loop sees the cancel
	b.set(u.addr())
	select {
	case r := <-held:
		if r.err != nil || r.code != 200 || r.body != "pod web.example held" {
			t.Fatalf("held request: %d %q %v; want the upstream's answer", r.code, r.body, r.err)
		}
	case <-time.After(time.Second):
		t.Fatal("held request: no answer within 1s of its target getting a Ready address")
	}
	code, body, _ := do(t, s.Client(), "POST", s.URL+"/", "web.example", "next")
	if code != 200 || body != "pod web.example next" {
		t.Fatalf("request after the cancel: %d %q; want the upstream's answer", code, body)
	}
}

// TestBodyReadTimeout: a held request whose body stalls is answered at --body-read-timeout when it is
// shorter than max-wait, and its bytes are given back.
func TestBodyReadTimeout(t *testing.T) {
	b := newFake(web)
	s, _ := newActivator(t, b, &fakeWaker{}, Options{MaxWait: 20 * time.Second, BodyReadTimeout: 300 * time.Millisecond, RetryAfter: 3 * time.Second})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	start := time.Now()
	r := <-send(context.Background(), s, "web.example", &stallingBody{n: 10, stop: stop}, 100)
	if r.err != nil || r.code != 503 || r.retryAfter != "3" || !strings.Contains(r.body, "did not arrive within 300ms") {
		t.Fatalf("got %d Retry-After %q %q %v; want 503 naming the body read timeout, Retry-After 3", r.code, r.retryAfter, r.body, r.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %s, want by the 300ms body read timeout", d)
	}
	waitFor(t, func() bool { return heldBytes(s.Config.Handler.(*Handler)) == 0 })
}
