package querylimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAcquire(t *testing.T) {
	for _, tc := range []struct {
		name          string
		inflight      int
		queue         int
		held          int // slots taken and kept before the call
		queued        int // callers already waiting before the call
		wantShed      bool
		wantFullQueue bool
	}{
		{name: "free slot", inflight: 2, queue: 1, held: 1},
		{name: "no limit", inflight: 0, queue: 0, held: 50},
		{name: "slots full, queue free: waits until the deadline", inflight: 2, queue: 1, held: 2, wantShed: true},
		{name: "slots and queue full: shed at once", inflight: 2, queue: 1, held: 2, queued: 1, wantShed: true, wantFullQueue: true},
		{name: "no queue: shed at once", inflight: 1, queue: 0, held: 1, wantShed: true, wantFullQueue: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Config{MaxInFlight: tc.inflight, MaxQueue: tc.queue}, nil)
			var releases []func()
			for range tc.held {
				r, err := l.Acquire(context.Background())
				if err != nil {
					t.Fatalf("taking slot: %v", err)
				}
				releases = append(releases, r)
			}
			waitCtx, stopWaiting := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range tc.queued {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if r, err := l.Acquire(waitCtx); err == nil {
						r()
					}
				}()
			}
			for l.Queued() < tc.queued {
				time.Sleep(time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			r, err := l.Acquire(ctx)
			took := time.Since(start)
			stopWaiting()
			wg.Wait()
			var shed *ShedError
			if got := errors.As(err, &shed); got != tc.wantShed {
				t.Fatalf("err %v, want shed %v", err, tc.wantShed)
			}
			if err == nil {
				r()
			}
			if tc.wantShed {
				if shed.Waited == tc.wantFullQueue {
					t.Errorf("Waited = %v, want %v (%v)", shed.Waited, !tc.wantFullQueue, err)
				}
				if tc.wantFullQueue && took > 25*time.Millisecond {
					t.Errorf("a full queue took %s to refuse; want at once", took)
				}
				if !tc.wantFullQueue && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err %v does not wrap the deadline", err)
				}
				if !strings.Contains(err.Error(), "shedding load") || !strings.Contains(err.Error(), "--prometheus-max-inflight") {
					t.Errorf("message %q does not say the adapter sheds load and which flag bounds it", err)
				}
			}
			for _, r := range releases {
				r()
			}
			if n := l.InFlight(); n != 0 {
				t.Errorf("%d slots still taken after every release", n)
			}
		})
	}
}

// TestNeverPastTheLimit: however many callers, no more than MaxInFlight hold a slot at once,
// at most MaxQueue wait, the rest are shed, and once the slots free up queries run again.
func TestNeverPastTheLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := New(Config{MaxInFlight: 3, MaxQueue: 5, Backend: "b"}, NewMetrics(reg))
	unblock := make(chan struct{})
	var mu sync.Mutex
	running, peak, ran, shedQueue := 0, 0, 0, 0
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := l.Acquire(context.Background())
			if err != nil {
				var shed *ShedError
				if !errors.As(err, &shed) || shed.Waited {
					t.Errorf("want a queue-full shed, got %v", err)
				}
				mu.Lock()
				shedQueue++
				mu.Unlock()
				return
			}
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			<-unblock
			mu.Lock()
			running--
			ran++
			mu.Unlock()
			release()
		}()
	}
	// Every caller has either a slot, a place in the queue or its refusal.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		settled := running == 3 && shedQueue == 32
		mu.Unlock()
		if settled && l.Queued() == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("running %d, queued %d, shed %d; want 3, 5, 32", running, l.Queued(), shedQueue)
		}
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(l.waiting); got != 5 {
		t.Errorf("queue depth metric %v, want 5", got)
	}
	if got := testutil.ToFloat64(l.shedFull); got != 32 {
		t.Errorf("shed metric %v, want 32", got)
	}
	close(unblock)
	wg.Wait()
	if peak > 3 {
		t.Errorf("%d queries held a slot at once; the limit is 3", peak)
	}
	if ran != 8 {
		t.Errorf("%d queries ran; want the 3 running and the 5 queued", ran)
	}
	// Recovered: the next query gets a slot at once.
	release, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatalf("after the load: %v", err)
	}
	release()
	if got := testutil.ToFloat64(l.inflight); got != 0 {
		t.Errorf("in-flight metric %v after every release, want 0", got)
	}
}

func TestNilLimiterDoesNotLimit(t *testing.T) {
	var l *Limiter
	release, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
}

// TestRebuiltLimiterSharesItsSeries: limiters built again for the same backend (a rule reload
// rebuilds a changed backend) reuse the backend's series instead of registering new ones, which
// would panic; Forget drops a backend's series and a forgotten limiter no longer changes them.
func TestRebuiltLimiterSharesItsSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	old := New(Config{MaxInFlight: 2, Backend: "b"}, m)
	release, err := old.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := New(Config{MaxInFlight: 4, Backend: "b"}, m) // must not panic
	other := New(Config{MaxInFlight: 1, Backend: "c"}, m)
	r2, err := rebuilt.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.inflight.WithLabelValues("b")); got != 2 {
		t.Errorf("backend b in flight %v, want 2 (one query on each limiter)", got)
	}
	if got := testutil.ToFloat64(other.inflight); got != 0 {
		t.Errorf("backend c in flight %v, want 0", got)
	}
	release()
	r2()
	m.Forget("c")
	if n := testutil.CollectAndCount(m.inflight); n != 1 {
		t.Errorf("%d in-flight series after forgetting c, want 1 (b)", n)
	}
	r3, err := other.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r3()
	if n := testutil.CollectAndCount(m.shed); n != 2 {
		t.Errorf("%d shed series after forgetting c, want b's 2", n)
	}
}
