package wake

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// keyLocks serialises work on one HPA: a decision and a push never interleave.
type keyLocks struct {
	mu sync.Mutex
	m  map[types.NamespacedName]*keyLock
}

// keyLock is one HPA's lock; refs counts holders and waiters so an idle lock is dropped.
type keyLock struct {
	ch   chan struct{}
	refs int
}

// lock takes key's lock, or gives up when ctx ends; the returned func releases it.
func (k *keyLocks) lock(ctx context.Context, key types.NamespacedName) (func(), error) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; k.drop(key, l) }, nil
	case <-ctx.Done():
		k.drop(key, l)
		return nil, context.Cause(ctx)
	}
}

func (k *keyLocks) drop(key types.NamespacedName, l *keyLock) {
	k.mu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}

// refs is how many hold or wait for key's lock (for tests).
func (k *keyLocks) refs(key types.NamespacedName) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.m[key]; l != nil {
		return l.refs
	}
	return 0
}
