package wake

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"
)

// clientRate is the kube-apiserver client's rate limiter. Fixed when a QPS is given; otherwise sized to the
// opted-in HPAs: each costs about three requests (scale and one or two signals) per poll, and a sleeping one
// is polled every PollSleeping, so the rate is 20 + n·3/PollSleeping (6 QPS per HPA at 500 ms), at least 50, burst twice that.
type clientRate struct {
	mu     sync.Mutex
	l      flowcontrol.RateLimiter
	auto   bool
	perHPA float64
	qps    float32
}

func newClientRate(qps float32, burst int, pollSleeping time.Duration) *clientRate {
	if pollSleeping <= 0 {
		pollSleeping = 500 * time.Millisecond
	}
	r := &clientRate{auto: qps <= 0, perHPA: 3 / pollSleeping.Seconds()}
	if r.auto {
		qps = 50
	}
	if burst <= 0 {
		burst = int(2 * qps)
	}
	r.qps, r.l = qps, flowcontrol.NewTokenBucketRateLimiter(qps, burst)
	return r
}

// resize sets the rate for n opted-in HPAs (only when the rate is automatic, and never below 50 QPS).
func (r *clientRate) resize(n int) {
	if !r.auto {
		return
	}
	qps := float32(max(50, 20+r.perHPA*float64(n)))
	r.mu.Lock()
	defer r.mu.Unlock()
	if qps == r.qps {
		return
	}
	klog.V(2).InfoS("kube-apiserver client rate", "hpas", n, "qps", qps, "burst", int(2*qps))
	r.qps, r.l = qps, flowcontrol.NewTokenBucketRateLimiter(qps, int(2*qps))
}

func (r *clientRate) current() flowcontrol.RateLimiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.l
}

// TryAccept takes a token if one is free.
func (r *clientRate) TryAccept() bool { return r.current().TryAccept() }

// Accept waits for a token.
func (r *clientRate) Accept() { r.current().Accept() }

// Stop does nothing: token buckets hold no resources.
func (r *clientRate) Stop() {}

// QPS is the current rate.
func (r *clientRate) QPS() float32 { return r.current().QPS() }

// Wait waits for a token or ctx's end.
func (r *clientRate) Wait(ctx context.Context) error { return r.current().Wait(ctx) }
