// Package coalesce shares one answer among the requests that ask the same question within a
// freshness bound: a cached answer no older than the bound is returned, otherwise one fetch runs
// and every concurrent caller for the same key waits for it. Errors are never cached, and the
// cache is bounded in entries and in age, so memory does not grow with request variety.
package coalesce

import (
	"container/list"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultBackend is the Backend of every key while the adapter reads one Prometheus.
const DefaultBackend = "default"

// Key is everything that shapes a shared answer; answers are shared only between equal keys.
type Key struct {
	Backend string // the Prometheus-compatible backend queried (DefaultBackend today)
	Tenant  string // the tenant the query ran as ("" while tenancy is off)
	Query   string // the query sent, carrying rule, namespace and metric selector
	Label   string // what is decoded of each sample: a label name, or "" for every label
}

// String is the key as one string, each field quoted but the query, which comes last.
func (k Key) String() string {
	return strconv.Quote(k.Backend) + " " + strconv.Quote(k.Tenant) + " " + strconv.Quote(k.Label) + " " + k.Query
}

// Outcome says how an answer was obtained.
type Outcome string

// The outcomes of Get.
const (
	Hit    Outcome = "hit"    // a cached answer within the bound
	Miss   Outcome = "miss"   // this caller's fetch ran
	Shared Outcome = "shared" // joined a fetch another caller started within the bound
)

// Cache holds answers of type V by Key. It is safe for concurrent use; use New to make one.
type Cache[V any] struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	maxEntries int
	maxAge     time.Duration

	mu      sync.Mutex
	order   *list.List            // of *entry[V], least recently stored first
	entries map[Key]*list.Element // completed answers
	flights map[Key]flight        // fetches under way
	seq     uint64                // numbers flights, so a caller never joins one it must not
	group   singleflight.Group
}

type entry[V any] struct {
	key  Key
	val  V
	at   time.Time     // when the fetch that produced val started
	keep time.Duration // the longest bound it was asked with: past it the answer serves no one
}

type flight struct {
	id    string // the singleflight key
	start time.Time
}

// New returns a cache of at most maxEntries answers, each kept while within the longest bound it
// was asked with and never past maxAge, which is also the largest bound Get honours.
func New[V any](maxEntries int, maxAge time.Duration) *Cache[V] {
	return &Cache[V]{maxEntries: max(1, maxEntries), maxAge: maxAge, order: list.New(),
		entries: map[Key]*list.Element{}, flights: map[Key]flight{}}
}

// MaxAge is the largest bound Get honours, and the longest an answer is kept.
func (c *Cache[V]) MaxAge() time.Duration { return c.maxAge }

// Len is the number of answers held.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *Cache[V]) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Get returns key's answer and when the fetch that produced it started. A cached answer is
// returned while its age is at most bound (clamped to MaxAge); otherwise fetch runs once for all
// concurrent callers whose bound its start time meets. fetch runs detached from the caller's
// cancellation (so one caller leaving does not fail the others) and must bound itself; a caller
// stops waiting when its ctx ends. A failed fetch is returned to its callers and not kept.
func (c *Cache[V]) Get(ctx context.Context, key Key, bound time.Duration, fetch func(context.Context) (V, error)) (V, time.Time, Outcome, error) {
	var zero V
	bound = min(bound, c.maxAge)
	arrived := c.now()
	c.mu.Lock()
	c.expire(arrived)
	if el, ok := c.entries[key]; ok {
		if e := el.Value.(*entry[V]); arrived.Sub(e.at) <= bound {
			e.keep = max(e.keep, bound)
			c.mu.Unlock()
			return e.val, e.at, Hit, nil
		}
	}
	f, ok := c.flights[key]
	if !ok || arrived.Sub(f.start) > bound {
		c.seq++
		f = flight{id: key.String() + "\x00" + strconv.FormatUint(c.seq, 10), start: arrived}
		c.flights[key] = f
	}
	c.mu.Unlock()

	ran := false // set only by this caller's own fetch function, should it be the one that runs
	ch := c.group.DoChan(f.id, func() (any, error) {
		ran = true
		start := c.now()
		v, err := fetch(context.WithoutCancel(ctx))
		c.mu.Lock()
		defer c.mu.Unlock()
		if cur, ok := c.flights[key]; ok && cur.id == f.id {
			delete(c.flights, key)
		}
		if err != nil {
			return nil, err
		}
		c.store(key, v, start, bound)
		return answer[V]{v, start}, nil
	})
	select {
	case <-ctx.Done():
		return zero, time.Time{}, Miss, fmt.Errorf("waiting for a shared query: %w", ctx.Err())
	case r := <-ch:
		how := Shared
		if ran {
			how = Miss
		}
		if r.Err != nil {
			return zero, time.Time{}, how, r.Err
		}
		a := r.Val.(answer[V])
		return a.val, a.at, how, nil
	}
}

type answer[V any] struct {
	val V
	at  time.Time
}

// store keeps v, asked for with bound, as key's answer unless a later fetch's answer is already
// kept. When the cache is full it first drops every answer past its bound, then the least recently
// stored ones. c.mu is held.
func (c *Cache[V]) store(key Key, v V, at time.Time, bound time.Duration) {
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*entry[V])
		if e.at.After(at) {
			return
		}
		e.val, e.at, e.keep = v, at, max(e.keep, bound)
		c.order.MoveToBack(el)
		return
	}
	now := c.now()
	if len(c.entries) >= c.maxEntries {
		for el := c.order.Front(); el != nil; {
			next := el.Next()
			if c.expired(el, now) {
				c.remove(el)
			}
			el = next
		}
	}
	for len(c.entries) >= c.maxEntries {
		c.remove(c.order.Front())
	}
	c.entries[key] = c.order.PushBack(&entry[V]{key: key, val: v, at: at, keep: bound})
}

// expire drops the least recently stored answers while they are past their bound. c.mu is held.
func (c *Cache[V]) expire(now time.Time) {
	for el := c.order.Front(); el != nil && c.expired(el, now); el = c.order.Front() {
		c.remove(el)
	}
}

// expired reports whether the answer at el is older than every bound it was asked with (or maxAge).
func (c *Cache[V]) expired(el *list.Element, now time.Time) bool {
	e := el.Value.(*entry[V])
	return now.Sub(e.at) > min(e.keep, c.maxAge)
}

func (c *Cache[V]) remove(el *list.Element) {
	delete(c.entries, el.Value.(*entry[V]).key)
	c.order.Remove(el)
}
