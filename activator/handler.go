package activator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"time"

	"k8s.io/klog/v2"
)

// Backends is what the handler needs of the cluster (Cluster implements it).
type Backends interface {
	Table() *Table
	Ready(Target) ([]string, error)
	Changed() <-chan struct{}
}

// Waker wakes a sleeping target. It must be idempotent and safe to call from
// every activator replica at once (a target already awake is left alone).
type Waker interface {
	Wake(ctx context.Context, t Target) error
}

// Options bound the activator.
type Options struct {
	MaxHeld      int           // held requests per target (default 100)
	MaxHeldBytes int64         // bytes of held request bodies per target (default 8 MiB)
	MaxWait      time.Duration // how long a request is held at most (default 60s)
	RetryAfter   time.Duration // the Retry-After of a 503 (default 5s)
	WakeEvery    time.Duration // how often a wake is repeated while requests are held (default 2s)
	// TrustedProxies are the peers whose X-Forwarded-For/-Host/-Proto and Forwarded headers are kept
	// (appended to); from any other peer they are replaced by the activator's own. None by default.
	TrustedProxies []netip.Prefix
}

func (o *Options) complete() {
	if o.MaxHeld <= 0 {
		o.MaxHeld = 100
	}
	if o.MaxHeldBytes <= 0 {
		o.MaxHeldBytes = 8 << 20
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 5 * time.Second
	}
	if o.WakeEvery <= 0 {
		o.WakeEvery = 2 * time.Second
	}
}

// Handler is the activator's HTTP handler: route, hold while asleep, forward.
type Handler struct {
	b       Backends
	o       Options
	m       *Metrics
	holds   *Holds
	forward *Forwarder
	wrote   func(*http.Request) // test hook: a held request's headers are on the wire
}

// NewHandler builds the handler; ctx bounds the wake loops it starts.
func NewHandler(ctx context.Context, b Backends, w Waker, m *Metrics, o Options) *Handler {
	o.complete()
	if m == nil {
		m = NewMetrics(nil)
	}
	h := &Handler{b: b, o: o, m: m}
	h.holds = newHolds(ctx, b, w, m, o)
	h.forward = NewForwarder(h.proxyError)
	h.forward.TrustedProxies = o.TrustedProxies
	return h
}

type statusKey struct{}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, ok := h.b.Table().Lookup(r.Host, r.URL.Path)
	if !ok {
		h.m.unrouted.WithLabelValues("404").Inc()
		// Only what the client asked for: the other tenants' hosts are none of its business.
		http.Error(w, fmt.Sprintf("no route for host %q path %q", r.Host, r.URL.Path), http.StatusNotFound)
		return
	}
	t := route.Target
	sw := &statusWriter{ResponseWriter: w}
	inFlight := h.m.inFlight.WithLabelValues(t.Namespace, t.Service)
	inFlight.Inc()
	defer func() {
		inFlight.Dec()
		h.m.done(t, sw.code())
	}()
	w = sw

	arrived := time.Now()
	deadline := arrived.Add(h.o.MaxWait)
	addrs, err := h.b.Ready(t)
	var se *ServiceError
	switch {
	case errors.As(err, &se):
		http.Error(w, "activator: "+se.Reason, http.StatusBadGateway)
		return
	case err != nil:
		http.Error(w, "activator: "+err.Error(), http.StatusBadGateway)
		return
	}
	readyAddrs := func() []string {
		a, _ := h.b.Ready(t)
		return a
	}
	// The body may have to go twice to the transport (see below): nothing is
	// read from it before a connection is made, so it must survive the close.
	body := r.Body
	if body != nil && body != http.NoBody {
		r.Body = noClose{body}
	}
	defer func() {
		if body != nil {
			body.Close()
		}
	}()
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 || len(addrs) == 0 || h.holds.holding(t) {
			held, ok := h.readHeldBody(w, r, t)
			if !ok {
				return
			}
			started, connected, ok := h.holds.hold(w, r, t, int64(len(held)), deadline)
			if !ok {
				return
			}
			defer started()
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = io.NopCloser(bytes.NewReader(held))
			}
			in := r
			r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
				WroteHeaders: func() {
					if h.wrote != nil {
						h.wrote(in)
					}
					started()
				},
				// A refused dial retries for a while: let the next held request try too.
				ConnectDone: func(_, _ string, err error) {
					if err != nil {
						started()
					}
				},
				// The target accepts connections: the cold start is over.
				GotConn: func(httptrace.GotConnInfo) { connected() },
			}))
		}
		if h.forward.Forward(w, r, t, readyAddrs, deadline) {
			return
		}
		// The target went to sleep between our look and the dial; nothing was sent: hold it.
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter.Seconds())))
	http.Error(w, fmt.Sprintf("activator: %s lost its Ready addresses twice while forwarding", t), http.StatusServiceUnavailable)
}

// noClose keeps a request body open when the transport closes it after a failed dial.
type noClose struct{ io.Reader }

func (noClose) Close() error { return nil }

// readHeldBody reads a held request's body, within the per-target byte budget.
func (h *Handler) readHeldBody(w http.ResponseWriter, r *http.Request, t Target) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	limit := h.o.MaxHeldBytes
	if r.ContentLength > limit {
		h.full(w, t, fmt.Sprintf("request body of %d bytes is over the %d bytes held per target", r.ContentLength, limit))
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		sw := w.(*statusWriter)
		sw.status = statusClientGone
		return nil, false
	}
	if int64(len(body)) > limit {
		h.full(w, t, fmt.Sprintf("request body is over the %d bytes held per target", limit))
		return nil, false
	}
	return body, true
}

// full answers 503 at once: the target's queue has no room.
func (h *Handler) full(w http.ResponseWriter, t Target, why string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter.Seconds())))
	http.Error(w, fmt.Sprintf("activator: %s is waking and its queue is full: %s", t, why), http.StatusServiceUnavailable)
}

// proxyError turns a failed forward into a status: 503 while nothing accepts, 499 when the client left, else 502.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var ns *NotServingError
	switch {
	case r.Context().Err() != nil:
		if sw, ok := w.(*statusWriter); ok {
			sw.status = statusClientGone
		}
	case errors.Is(err, errNoReady):
		// Forward reports it; the request is held and forwarded again.
	case errors.As(err, &ns):
		w.Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter.Seconds())))
		http.Error(w, "activator: "+ns.Error(), http.StatusServiceUnavailable)
	default:
		klog.V(2).InfoS("forward failed", "host", r.Host, "err", err)
		http.Error(w, "activator: forward: "+err.Error(), http.StatusBadGateway)
	}
}

// statusClientGone is the code counted for a client that left (nginx's 499); it is never written.
const statusClientGone = 499

// statusWriter records the status written, for the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
