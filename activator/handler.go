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
	"os"
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
	MaxHeld           int           // held requests per target (default 100)
	MaxHeldBytes      int64         // bytes of held request bodies per target (default 8 MiB)
	MaxHeldBytesTotal int64         // bytes of held request bodies over all targets (default 64 MiB)
	MaxWait           time.Duration // how long a request is held at most (default 60s)
	BodyReadTimeout   time.Duration // how long a held request's body may take to arrive (default and at most MaxWait)
	RetryAfter        time.Duration // the Retry-After of a 503 (default 5s)
	WakeEvery         time.Duration // how often a wake is repeated while requests are held (default 2s)
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
	if o.MaxHeldBytesTotal <= 0 {
		o.MaxHeldBytesTotal = 64 << 20
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.BodyReadTimeout <= 0 || o.BodyReadTimeout > o.MaxWait {
		o.BodyReadTimeout = o.MaxWait
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

// NewHandler builds the handler; ctx bounds the wakes it calls. Give it a
// context that outlives the server's Shutdown: once ctx ends no target is
// woken any more, though held requests are still forwarded when their target
// gets a Ready address, or answered at their own deadline.
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
	hasBody := body != nil && body != http.NoBody
	if hasBody {
		r.Body = noClose{body}
	}
	defer func() {
		if body != nil {
			body.Close()
		}
	}()
	// The bytes of a held body, reserved before it is read, given back once it is garbage.
	res := &reservation{t: t}
	defer h.holds.unreserve(res)
	var held heldBody
	read := !hasBody
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 || len(addrs) == 0 || h.holds.holding(t) {
			size := int64(0)
			if !read && r.ContentLength > 0 {
				size = r.ContentLength
			}
			wt, err := h.holds.enter(t, res, size)
			if err != nil {
				var unread io.Reader
				if !read {
					unread = body
				}
				h.refuse(w, r, t, err, unread, true)
				return
			}
			if !read {
				if held, ok = h.readHeldBody(w, r, t, body, res, arrived.Add(h.o.BodyReadTimeout)); !ok {
					h.holds.abandon(wt)
					return
				}
				read = true
			}
			wt.bodyRead.Store(true)
			started, connected, ok := h.holds.wait(w, r, wt, deadline)
			if !ok {
				return
			}
			defer started()
			if hasBody {
				r.Body = io.NopCloser(held.reader())
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

// heldBlock is the most a body of unknown length reserves, and allocates, at a time.
const heldBlock = 64 << 10

// heldBody is a held request's body, in the blocks it was read into.
type heldBody [][]byte

// reader reads the body from its start.
func (b heldBody) reader() io.Reader {
	rs := make([]io.Reader, len(b))
	for i, p := range b {
		rs[i] = bytes.NewReader(p)
	}
	return io.MultiReader(rs...)
}

// readHeldBody reads a held request's body by readBy (its read deadline, so a
// client that stops sending is answered then). A declared length was reserved
// when the request entered its queue, and is read into one buffer of that
// size; a body of unknown length reserves each block before reading into it,
// and is refused once the budgets have no room for more.
func (h *Handler) readHeldBody(w http.ResponseWriter, r *http.Request, t Target, body io.Reader, res *reservation, readBy time.Time) (heldBody, bool) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(readBy); err != nil {
		klog.V(4).InfoS("no read deadline for a held body", "target", t, "err", err)
	}
	var held heldBody
	var err error
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		var n int
		if n, err = fill(body, buf); err == nil || (err == io.EOF && n == len(buf)) {
			err = atEOF(body)
		}
		held = heldBody{buf}
	} else {
		held, err = h.readUnknown(body, res)
	}
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{}) // the forward may take longer; the body is read
		return held, true
	}
	var full *fullError
	switch {
	case errors.As(err, &full):
		h.refuse(w, r, t, err, body, true)
	case errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(readBy):
		klog.V(2).InfoS("held request body not received in time", "target", t, "within", h.o.BodyReadTimeout)
		h.refuse(w, r, t, fmt.Errorf("%w: its body did not arrive within %s", errBodyTimeout, h.o.BodyReadTimeout), body, false)
	default: // the client went away while sending
		w.(*statusWriter).status = statusClientGone
	}
	return nil, false
}

// errBodyTimeout: a held request's body did not arrive by its read deadline.
var errBodyTimeout = errors.New("request body too slow")

// readUnknown reads a body of unknown length in blocks, each reserved on res before it is allocated.
func (h *Handler) readUnknown(body io.Reader, res *reservation) (heldBody, error) {
	var held heldBody
	for {
		room, err := h.holds.growUpTo(res, heldBlock)
		if room == 0 {
			// No room left: fine if the body has ended.
			if eof := atEOF(body); eof != nil {
				if errors.Is(eof, errMoreBody) {
					return nil, err
				}
				return nil, eof
			}
			return held, nil
		}
		buf := make([]byte, room)
		n, rerr := fill(body, buf)
		if n > 0 {
			held = append(held, buf[:n])
		}
		switch {
		case rerr == io.EOF:
			return held, nil
		case rerr != nil:
			return nil, rerr
		}
	}
}

// errMoreBody: the body goes on past what was read.
var errMoreBody = errors.New("request body goes on")

// atEOF reads one more byte: nil at the body's end, errMoreBody if there is more.
func atEOF(body io.Reader) error {
	var p [1]byte
	for {
		n, err := body.Read(p[:])
		switch {
		case n > 0:
			return errMoreBody
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// fill reads into all of buf, or until the body's error (io.EOF at its end).
func fill(body io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := body.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// refuse answers 503 with Retry-After at once: no room to hold the request
// (or its body did not arrive in time). An unread body is not held: over
// HTTP/1 the connection is closed after the answer, and, when the client may
// still be sending (drain), what it sends is read and dropped for at most a
// second after the answer has gone, so that the close does not reset the
// answer away before the client reads it, and a client that stalls cannot
// keep the handler.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, t Target, err error, unread io.Reader, drain bool) {
	msg := fmt.Sprintf("activator: %s is waking and its queue is full: %v\n", t, err)
	if errors.Is(err, errBodyTimeout) {
		msg = fmt.Sprintf("activator: %s is waking and %v\n", t, err)
	}
	hdr := w.Header()
	if unread != nil && r.ProtoMajor == 1 {
		hdr.Set("Connection", "close")
	}
	hdr.Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter.Seconds())))
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(len(msg))) // complete once flushed, before the drain
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, msg)
	if unread == nil || !drain || r.ProtoMajor != 1 {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil || rc.SetReadDeadline(time.Now().Add(time.Second)) != nil {
		return
	}
	_, _ = io.Copy(io.Discard, unread)
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
