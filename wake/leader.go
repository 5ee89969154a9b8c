package wake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/leaderlock"
)

// errLostLeadership cancels what a replica was doing when its term as leader ends.
var errLostLeadership = errors.New("lost leadership")

// ElectionTiming is the leader election's Lease timing (client-go's LeaderElectionConfig durations).
type ElectionTiming struct {
	LeaseDuration time.Duration // how long a standby waits before taking over a Lease that is not renewed (default 15s)
	RenewDeadline time.Duration // how long the leader tries to renew before it stops acting (default 10s)
	RetryPeriod   time.Duration // between tries (default 2s)
}

func (t ElectionTiming) withDefaults() ElectionTiming {
	if t.LeaseDuration <= 0 {
		t.LeaseDuration = 15 * time.Second
	}
	if t.RenewDeadline <= 0 {
		t.RenewDeadline = 10 * time.Second
	}
	if t.RetryPeriod <= 0 {
		t.RetryPeriod = 2 * time.Second
	}
	return t
}

// Leadership is this replica's standing in the leader election, fed only by the election's callbacks.
// Every action of the controller runs under the context of the current term (see Leading).
type Leadership struct {
	mu     sync.Mutex
	term   context.Context // the current term's context; nil between terms
	leader string          // the identity the election last reported as leader
	ended  error           // non-nil once the election has ended for good
	// leaders are the identities reported as leader since the last takeLeaders, in order.
	leaders []string
	changed chan struct{} // gets a value (at most one pending) when the term, the leader or the end changes
}

// NewLeadership returns a Leadership that does not lead until an election says so.
func NewLeadership() *Leadership { return &Leadership{changed: make(chan struct{}, 1)} }

// AlwaysLeading returns a Leadership that leads for as long as ctx lives: a single replica without election.
func AlwaysLeading(ctx context.Context) *Leadership {
	return &Leadership{term: ctx, changed: make(chan struct{}, 1)}
}

// notify records a change for the one reader of changed; l.mu is held.
func (l *Leadership) notify() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// takeLeaders returns the identities reported as leader since its last call.
func (l *Leadership) takeLeaders() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.leaders
	l.leaders = nil
	return out
}

// Leading returns the context of the current term (nil when this replica does not lead) and the leader's identity.
// The context ends as soon as the term ends: work started under it stops there.
func (l *Leadership) Leading() (context.Context, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == nil || l.term.Err() != nil {
		return nil, l.leader
	}
	return l.term, l.leader
}

// Ended reports why the election ended for good, nil while it runs.
func (l *Leadership) Ended() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended
}

func (l *Leadership) setTerm(ctx context.Context) {
	l.mu.Lock()
	l.term = ctx
	l.notify()
	l.mu.Unlock()
}

func (l *Leadership) setLeader(id string) {
	l.mu.Lock()
	l.leader = id
	l.leaders = append(l.leaders, id)
	l.notify()
	l.mu.Unlock()
}

func (l *Leadership) end(err error) {
	l.mu.Lock()
	l.term, l.ended = nil, err
	l.notify()
	l.mu.Unlock()
}

// Elect campaigns for the Lease until ctx ends, and again every time a term ends (client-go's
// LeaderElector.Run returns after one failed renewal). Each term's context ends when client-go
// ends it or as soon as the Lease has gone unrenewed for RenewDeadline, whichever is first: client-go
// only ends it after also trying to release the Lease, which can take another RenewDeadline when the
// API server is unreachable, while a standby may take over LeaseDuration after the last renewal.
// On ctx's end the Lease is released before Elect returns.
// onStart, if set, runs at the start of every term.
func Elect(ctx context.Context, lock resourcelock.Interface, timing ElectionTiming, l *Leadership, onStart func()) error {
	timing = timing.withDefaults()
	rl := leaderlock.Wrap(lock)
	id := lock.Identity()
	for {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: rl, LeaseDuration: timing.LeaseDuration, RenewDeadline: timing.RenewDeadline, RetryPeriod: timing.RetryPeriod,
			ReleaseOnCancel: true, Name: lock.Describe(),
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(term context.Context) {
					term, cancel := context.WithCancelCause(term)
					l.setTerm(term)
					klog.InfoS("leading", "identity", id)
					if onStart != nil {
						onStart()
					}
					watchRenewals(term, cancel, rl, timing.RenewDeadline)
				},
				OnStoppedLeading: func() { l.setTerm(nil) },
				OnNewLeader:      func(leader string) { l.setLeader(leader); klog.InfoS("leader", "identity", leader) },
			},
		})
		if err != nil {
			err = fmt.Errorf("leader election: %w", err)
			l.end(err)
			return err
		}
		le.Run(ctx)
		l.setTerm(nil)
		if ctx.Err() != nil {
			l.end(ctx.Err())
			return nil
		}
		klog.InfoS("leader election ended; campaigning again", "identity", id, "lease", lock.Describe())
		select {
		case <-ctx.Done():
			l.end(ctx.Err())
			return nil
		case <-time.After(timing.RetryPeriod):
		}
	}
}

// watchRenewals ends the term once the Lease has gone unrenewed for renewDeadline.
func watchRenewals(term context.Context, cancel context.CancelCauseFunc, rl *leaderlock.Lock, renewDeadline time.Duration) {
	for {
		left := time.Until(rl.LastRenew().Add(renewDeadline))
		if left <= 0 {
			klog.InfoS("lease not renewed in time: no longer acting", "lease", rl.Describe(), "renewDeadline", renewDeadline)
			cancel(errLostLeadership)
			return
		}
		select {
		case <-term.Done():
			return
		case <-time.After(left):
		}
	}
}

// underTerm is ctx, also ended when the term ends.
func underTerm(ctx, term context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(term, func() { cancel(errLostLeadership) })
	return ctx, func() { stop(); cancel(context.Canceled) }
}
