package activator

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Holds keeps one bounded queue of held requests per sleeping target. The
// first request held wakes the target at once; when the target has a Ready
// address every held request is released, in arrival order.
type Holds struct {
	ctx context.Context
	b   Backends
	w   Waker
	m   *Metrics
	o   Options

	mu sync.Mutex
	q  map[Target]*queue
}

// queue is one target's held requests.
type queue struct {
	waiters []*waiter // arrival order
	bytes   int64
	since   time.Time // first hold of this cold start
	served  sync.Once // the cold start is observed once: when a held request first gets a connection
}

type waiter struct {
	q       *queue
	release chan struct{}
	started chan struct{} // closed once its request is on the wire (or will never be)
	once    sync.Once
	size    int64
}

// start tells the releaser the next held request may go.
func (wt *waiter) start() { wt.once.Do(func() { close(wt.started) }) }

func newHolds(ctx context.Context, b Backends, w Waker, m *Metrics, o Options) *Holds {
	return &Holds{ctx: ctx, b: b, w: w, m: m, o: o, q: map[Target]*queue{}}
}

// holding reports whether t has held requests (a newcomer queues behind them).
func (h *Holds) holding(t Target) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.q[t] != nil
}

// hold queues r until t has a Ready address (true: forward it now, and call
// started once its headers are written, so the next held request goes after
// it, and connected once it has a connection to the target), or answers it
// itself: 503 at once when the queue is full, 503 past the deadline, nothing
// when the client leaves (false).
func (h *Holds) hold(w http.ResponseWriter, r *http.Request, t Target, size int64, deadline time.Time) (started, connected func(), ok bool) {
	wt := &waiter{release: make(chan struct{}), started: make(chan struct{}), size: size}
	defer func() {
		if !ok {
			wt.start()
		}
	}()
	h.mu.Lock()
	q := h.q[t]
	if q != nil && (len(q.waiters) >= h.o.MaxHeld || q.bytes+size > h.o.MaxHeldBytes) {
		n, b := len(q.waiters), q.bytes
		h.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter.Seconds())))
		http.Error(w, fmt.Sprintf("activator: %s is waking and its queue is full (%d requests, %d bytes held; at most %d, %d bytes)",
			t, n, b, h.o.MaxHeld, h.o.MaxHeldBytes), http.StatusServiceUnavailable)
		return nil, nil, false
	}
	if q == nil {
		q = &queue{since: time.Now()}
		h.q[t] = q
		go h.wake(t, q)
	}
	wt.q = q
	q.waiters = append(q.waiters, wt)
	q.bytes += size
	h.mu.Unlock()

	held := h.m.held.WithLabelValues(t.Namespace, t.Service)
	held.Inc()
	defer held.Dec()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-wt.release:
		if r.Context().Err() != nil {
			w.(*statusWriter).status = statusClientGone // gone as it was released: dropped, never forwarded
			return nil, nil, false
		}
		return wt.start, h.connected(t, wt.q), true
	case <-r.Context().Done():
		h.leave(t, wt)
		w.(*statusWriter).status = statusClientGone
		return nil, nil, false
	case <-timer.C:
		if !h.leave(t, wt) {
			if r.Context().Err() == nil { // released at the same instant: forward
				return wt.start, h.connected(t, wt.q), true
			}
			return nil, nil, false
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter.Seconds())))
		http.Error(w, fmt.Sprintf("activator: %s did not get a Ready address within %s", t, h.o.MaxWait), http.StatusServiceUnavailable)
		return nil, nil, false
	}
}

// connected returns what a released request calls once it has a connection to
// the target: the first call of a cold start observes its duration. A Ready
// address alone does not end a cold start: an address can be Ready before its
// process listens (no readiness probe, or a probe that lies), and the client
// waits until a connection is accepted.
func (h *Holds) connected(t Target, q *queue) func() {
	return func() {
		q.served.Do(func() {
			d := time.Since(q.since)
			h.m.coldStart.WithLabelValues(t.Namespace, t.Service).Observe(d.Seconds())
			klog.V(2).InfoS("cold start served", "target", t, "coldStart", d)
		})
	}
}

// leave takes wt out of t's queue; false if it was released already.
func (h *Holds) leave(t Target, wt *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.q[t]
	if q == nil {
		return false
	}
	for i, x := range q.waiters {
		if x == wt {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			q.bytes -= wt.size
			return true
		}
	}
	return false
}

// wake runs while q holds requests: it wakes t at once (and again every
// WakeEvery, in case of an error or of someone putting it back to sleep) and
// releases the queue as soon as t has a Ready address.
func (h *Holds) wake(t Target, q *queue) {
	var lastWake time.Time
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		changed := h.b.Changed()
		if addrs, err := h.b.Ready(t); err == nil && len(addrs) > 0 {
			h.release(t, q)
			return
		}
		h.mu.Lock()
		empty := len(q.waiters) == 0
		if empty {
			delete(h.q, t)
		}
		h.mu.Unlock()
		if empty {
			return // every held client left or timed out
		}
		if time.Since(lastWake) >= h.o.WakeEvery {
			lastWake = time.Now()
			go h.callWake(t)
		}
		select {
		case <-h.ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func (h *Holds) callWake(t Target) {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	if err := h.w.Wake(ctx, t); err != nil {
		h.m.wakes.WithLabelValues(t.Namespace, t.Service, "error").Inc()
		klog.ErrorS(err, "wake for held requests", "target", t)
		return
	}
	h.m.wakes.WithLabelValues(t.Namespace, t.Service, "ok").Inc()
	klog.V(2).InfoS("woken for held requests", "target", t)
}

// release lets every held request of q go, in arrival order.
func (h *Holds) release(t Target, q *queue) {
	h.mu.Lock()
	ws := q.waiters
	q.waiters = nil
	delete(h.q, t)
	h.mu.Unlock()
	if len(ws) > 0 {
		klog.V(2).InfoS("releasing held requests", "target", t, "held", len(ws), "sinceFirstHeld", time.Since(q.since))
	}
	// One at a time: the next goes once the previous one's headers are on the wire.
	for _, wt := range ws {
		close(wt.release)
		select {
		case <-wt.started:
		case <-time.After(250 * time.Millisecond): // a slow dial must not stall the rest for long
		case <-h.ctx.Done():
			return
		}
	}
}
