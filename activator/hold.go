package activator

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// Holds keeps one bounded queue of held requests per sleeping target, and the
// byte budget of their bodies. A request takes its place in the queue, and
// the bytes its body declares, before a byte of its body is read: a request
// that does not fit is refused at once. The first request held wakes the
// target at once; when the target has a Ready address every held request is
// released, in arrival order.
type Holds struct {
	ctx context.Context
	b   Backends
	w   Waker
	m   *Metrics
	o   Options

	mu    sync.Mutex
	q     map[Target]*queue
	bytes map[Target]int64 // body bytes reserved per target: held, being read, or being forwarded
	total int64            // body bytes reserved over all targets
}

// queue is one target's held requests.
type queue struct {
	waiters []*waiter // arrival order
	since   time.Time // first hold of this cold start
	served  sync.Once // the cold start is observed once: when a held request first gets a connection
}

type waiter struct {
	t        Target
	q        *queue
	release  chan struct{}
	started  chan struct{} // closed once its request is on the wire (or will never be)
	once     sync.Once
	counted  sync.Once   // leaves the held gauge once
	bodyRead atomic.Bool // its body is read: once released, it goes at once
}

// start tells the releaser the next held request may go.
func (wt *waiter) start() { wt.once.Do(func() { close(wt.started) }) }

// reservation is the body bytes one request has reserved; they are given back
// (unreserve) when its handler returns, as its body is then garbage.
type reservation struct {
	t     Target
	bytes int64
}

// fullError says why a request, or more of its body, does not fit.
type fullError struct{ why string }

func (e *fullError) Error() string { return e.why }

func newHolds(ctx context.Context, b Backends, w Waker, m *Metrics, o Options) *Holds {
	return &Holds{ctx: ctx, b: b, w: w, m: m, o: o, q: map[Target]*queue{}, bytes: map[Target]int64{}}
}

// holding reports whether t has held requests (a newcomer queues behind them).
func (h *Holds) holding(t Target) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.q[t] != nil
}

// enter queues a request for t, in arrival order, with size more body bytes
// reserved on res, before its body is read. It is refused (a *fullError) when
// t's queue has MaxHeld requests, or the bytes would pass t's or the global
// budget. The first request of a queue wakes t.
func (h *Holds) enter(t Target, res *reservation, size int64) (*waiter, error) {
	h.mu.Lock()
	q := h.q[t]
	if q != nil && len(q.waiters) >= h.o.MaxHeld {
		n := len(q.waiters)
		h.mu.Unlock()
		return nil, &fullError{fmt.Sprintf("%d requests held; at most %d", n, h.o.MaxHeld)}
	}
	if err := h.reserveLocked(res, size); err != nil {
		h.mu.Unlock()
		return nil, err
	}
	if q == nil {
		q = &queue{since: time.Now()}
		h.q[t] = q
		go h.wake(t, q)
	}
	wt := &waiter{t: t, q: q, release: make(chan struct{}), started: make(chan struct{})}
	q.waiters = append(q.waiters, wt)
	h.mu.Unlock()
	h.m.held.WithLabelValues(t.Namespace, t.Service).Inc()
	return wt, nil
}

// reserveLocked adds n bytes to res if they fit both budgets.
func (h *Holds) reserveLocked(res *reservation, n int64) error {
	t := res.t
	switch {
	case h.bytes[t]+n > h.o.MaxHeldBytes:
		return &fullError{fmt.Sprintf("%d bytes of bodies held for it; %d more would pass its %d bytes", h.bytes[t], n, h.o.MaxHeldBytes)}
	case h.total+n > h.o.MaxHeldBytesTotal:
		return &fullError{fmt.Sprintf("%d bytes of bodies held for all targets; %d more would pass the %d bytes held in all", h.total, n, h.o.MaxHeldBytesTotal)}
	}
	h.bytes[t] += n
	h.total += n
	res.bytes += n
	return nil
}

// growUpTo reserves up to n more bytes on res, as many as both budgets have
// room for; with no room at all it reserves none and says why.
func (h *Holds) growUpTo(res *reservation, n int64) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	room := min(n, h.o.MaxHeldBytes-h.bytes[res.t], h.o.MaxHeldBytesTotal-h.total)
	if room <= 0 {
		return 0, h.reserveLocked(res, 1) // fails, naming the budget that is full
	}
	return room, h.reserveLocked(res, room)
}

// unreserve gives back every byte res holds.
func (h *Holds) unreserve(res *reservation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if res.bytes == 0 {
		return
	}
	h.bytes[res.t] -= res.bytes
	if h.bytes[res.t] == 0 {
		delete(h.bytes, res.t)
	}
	h.total -= res.bytes
	res.bytes = 0
}

// uncount takes wt out of the held gauge, once.
func (h *Holds) uncount(wt *waiter) {
	wt.counted.Do(func() { h.m.held.WithLabelValues(wt.t.Namespace, wt.t.Service).Dec() })
}

// abandon takes wt out of its queue: its body could not be read.
func (h *Holds) abandon(wt *waiter) {
	h.leave(wt)
	h.uncount(wt)
	wt.start()
}

// wait holds wt, whose body is read, until its target has a Ready address
// (true: forward it now, and call started once its headers are written, so
// the next held request goes after it, and connected once it has a
// connection to the target), or answers it itself: 503 past the deadline,
// nothing when the client leaves (false).
func (h *Holds) wait(w http.ResponseWriter, r *http.Request, wt *waiter, deadline time.Time) (started, connected func(), ok bool) {
	defer func() {
		h.uncount(wt)
		if !ok {
			wt.start()
		}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-wt.release:
		if r.Context().Err() != nil {
			w.(*statusWriter).status = statusClientGone // gone as it was released: dropped, never forwarded
			return nil, nil, false
		}
		return wt.start, h.connected(wt.t, wt.q), true
	case <-r.Context().Done():
		h.leave(wt)
		w.(*statusWriter).status = statusClientGone
		return nil, nil, false
	case <-timer.C:
		if !h.leave(wt) {
			if r.Context().Err() == nil { // released at the same instant: forward
				return wt.start, h.connected(wt.t, wt.q), true
			}
			return nil, nil, false
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(h.o.RetryAfter.Seconds())))
		http.Error(w, fmt.Sprintf("activator: %s did not get a Ready address within %s", wt.t, h.o.MaxWait), http.StatusServiceUnavailable)
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

// leave takes wt out of its queue; false if it was released already.
func (h *Holds) leave(wt *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := wt.q
	for i, x := range q.waiters {
		if x == wt {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// wake runs while q holds requests: it wakes t at once (and again every
// WakeEvery, in case of an error or of someone putting it back to sleep) and
// releases the queue as soon as t has a Ready address. Once h's context ends
// it wakes no more, but still releases the queue when t gets a Ready address
// (another replica may wake it): held requests are forwarded, or answered at
// their own deadline, and the queue is gone once they are.
func (h *Holds) wake(t Target, q *queue) {
	var lastWake time.Time
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	stopping := h.ctx.Done()
	for {
		changed := h.b.Changed()
		if addrs, err := h.b.Ready(t); err == nil && len(addrs) > 0 {
			h.release(t, q)
			return
		}
		h.mu.Lock()
		n := len(q.waiters)
		if n == 0 {
			delete(h.q, t)
		}
		h.mu.Unlock()
		if n == 0 {
			return // every held client left or timed out
		}
		if h.ctx.Err() == nil && time.Since(lastWake) >= h.o.WakeEvery {
			lastWake = time.Now()
			go h.callWake(t)
		}
		select {
		case <-stopping:
			stopping = nil
			klog.InfoS("stopping: held requests wait for a Ready address without more wakes", "target", t, "held", n)
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
		if !wt.bodyRead.Load() {
			continue // it goes once its body has arrived; the others need not wait for that
		}
		select {
		case <-wt.started:
		case <-time.After(250 * time.Millisecond): // a slow dial (or body) must not stall the rest for long
		}
	}
}
