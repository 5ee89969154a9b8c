// Package leaderlock wraps client-go's resourcelock for leader election: it refuses to release a
// Lease another replica holds, and it records when this replica last renewed its own.
package leaderlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrHeldElsewhere refuses a release of a Lease another replica holds.
var ErrHeldElsewhere = errors.New("not releasing the Lease: another replica holds it")

// Lock is a resourcelock.Interface whose release never clears another replica's Lease. client-go's
// release (ReleaseOnCancel) reads the Lease, then writes an empty holder if its own, possibly stale,
// record of the last term says it leads; after an outage that would clear the Lease of the replica
// that took over, with the read's current resourceVersion, so the API server accepts it.
type Lock struct {
	resourcelock.Interface
	mu        sync.Mutex
	renewedAt time.Time
	holder    string // the holder the last successful Get read
}

// Wrap returns lock with the safe release and renewal times.
func Wrap(lock resourcelock.Interface) *Lock { return &Lock{Interface: lock} }

// Get reads the Lease and remembers its holder.
func (l *Lock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	ler, raw, err := l.Interface.Get(ctx)
	if err == nil && ler != nil {
		l.mu.Lock()
		l.holder = ler.HolderIdentity
		l.mu.Unlock()
	}
	return ler, raw, err
}

// Create writes a new Lease and, when it names this replica, records the renewal.
func (l *Lock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	sent := time.Now()
	err := l.Interface.Create(ctx, ler)
	l.record(err, ler, sent)
	return err
}

// Update writes the Lease; a release (an empty holder) of a Lease the last Get saw held by another
// replica is refused with ErrHeldElsewhere.
func (l *Lock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	if ler.HolderIdentity == "" {
		l.mu.Lock()
		holder := l.holder
		l.mu.Unlock()
		if holder != "" && holder != l.Identity() {
			return fmt.Errorf("%w (%s)", ErrHeldElsewhere, holder)
		}
	}
	sent := time.Now()
	err := l.Interface.Update(ctx, ler)
	l.record(err, ler, sent)
	return err
}

func (l *Lock) record(err error, ler resourcelock.LeaderElectionRecord, sent time.Time) {
	if err != nil || ler.HolderIdentity != l.Identity() {
		return
	}
	l.mu.Lock()
	l.renewedAt = sent // the request's start: the Lease cannot have been renewed later than that
	l.mu.Unlock()
}

// LastRenew is when this replica last wrote the Lease as its holder (the write's start).
func (l *Lock) LastRenew() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewedAt
}
