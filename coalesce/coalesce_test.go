package coalesce

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func newCache(t *testing.T, maxEntries int, maxAge time.Duration) (*Cache[int], *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	c := New[int](maxEntries, maxAge)
	c.Now = clk.Now
	return c, clk
}

// counter is a fetch that answers how many times it ran.
type counter struct{ n atomic.Int32 }

func (f *counter) fetch(context.Context) (int, error) { return int(f.n.Add(1)), nil }

var key = Key{Backend: DefaultBackend, Query: `sum by (pod) (x{namespace="shop"})`, Label: "pod"}

// TestBound: an answer is served while its age is at most the bound, and fetched again a
// nanosecond past it; the bound is clamped to MaxAge.
func TestBound(t *testing.T) {
	tests := []struct {
		name    string
		bound   time.Duration
		maxAge  time.Duration
		after   time.Duration
		want    int
		outcome Outcome
	}{
		{"same instant", 15 * time.Second, time.Minute, 0, 1, Hit},
		{"at the bound", 15 * time.Second, time.Minute, 15 * time.Second, 1, Hit},
		{"a nanosecond past the bound", 15 * time.Second, time.Minute, 15*time.Second + 1, 2, Miss},
		{"bound above MaxAge is clamped: at MaxAge", time.Hour, time.Minute, time.Minute, 1, Hit},
		{"bound above MaxAge is clamped: past MaxAge", time.Hour, time.Minute, time.Minute + 1, 2, Miss},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, clk := newCache(t, 10, tc.maxAge)
			var f counter
			t0 := clk.Now()
			v, at, how, err := c.Get(context.Background(), key, tc.bound, f.fetch)
			if err != nil || v != 1 || !at.Equal(t0) || how != Miss {
				t.Fatalf("first Get = %d, %v, %s, %v; want 1, %v, miss, nil", v, at, how, err, t0)
			}
			clk.Step(tc.after)
			v, at, how, err = c.Get(context.Background(), key, tc.bound, f.fetch)
			if err != nil || v != tc.want || how != tc.outcome {
				t.Fatalf("second Get = %d, %s, %v; want %d, %s, nil", v, how, err, tc.want, tc.outcome)
			}
			if age := clk.Now().Sub(at); age > min(tc.bound, tc.maxAge) {
				t.Errorf("served an answer %v old, bound %v", age, tc.bound)
			}
		})
	}
}

// TestConcurrentCallersShareOneFetch: callers for one key while its fetch runs all get its answer;
// the fetch runs once.
func TestConcurrentCallersShareOneFetch(t *testing.T) {
	c, _ := newCache(t, 10, time.Minute)
	var runs atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	fetch := func(context.Context) (int, error) {
		if runs.Add(1) == 1 {
			close(entered)
		}
		<-release
		return 42, nil
	}
	const n = 50
	var wg sync.WaitGroup
	outcomes := make([]Outcome, n)
	errs := make([]error, n)
	vals := make([]int, n)
	wg.Add(1)
	go func() {
		defer wg.Done()
		vals[0], _, outcomes[0], errs[0] = c.Get(context.Background(), key, time.Second, fetch)
	}()
	<-entered
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals[i], _, outcomes[i], errs[i] = c.Get(context.Background(), key, time.Second, fetch)
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the callers join; a late one finds the answer cached instead
	close(release)
	wg.Wait()
	if r := runs.Load(); r != 1 {
		t.Errorf("fetch ran %d times, want 1", r)
	}
	if outcomes[0] != Miss {
		t.Errorf("the first caller's outcome is %s, want miss", outcomes[0])
	}
	for i := range n {
		if errs[i] != nil || vals[i] != 42 {
			t.Errorf("caller %d: %d, %v", i, vals[i], errs[i])
		}
		if i > 0 && outcomes[i] != Shared && outcomes[i] != Hit {
			t.Errorf("caller %d: outcome %s, want shared or hit", i, outcomes[i])
		}
	}
}

// TestSlowFetchNotJoinedPastBound: a caller does not join a fetch that started longer than its
// bound ago; it runs its own, so the answer it gets is never older than its bound.
func TestSlowFetchNotJoinedPastBound(t *testing.T) {
	c, clk := newCache(t, 10, time.Minute)
	var runs atomic.Int32
	entered := make(chan int32, 2)
	release := make(chan struct{})
	fetch := func(context.Context) (int, error) {
		n := runs.Add(1)
		entered <- n
		<-release
		return int(n), nil
	}
	done := make(chan Outcome, 2)
	go func() {
		_, _, how, _ := c.Get(context.Background(), key, time.Second, fetch)
		done <- how
	}()
	<-entered
	clk.Step(time.Second + 1)
	t1 := clk.Now()
	var v int
	var at time.Time
	go func() {
		var how Outcome
		v, at, how, _ = c.Get(context.Background(), key, time.Second, fetch)
		done <- how
	}()
	<-entered // the second caller's own fetch started
	close(release)
	if a, b := <-done, <-done; a != Miss || b != Miss {
		t.Errorf("outcomes %s, %s; want miss, miss", a, b)
	}
	if runs.Load() != 2 || v != 2 || at.Before(t1) {
		t.Errorf("runs %d, second answer %d fetched at %v (asked at %v); want 2, 2, not before", runs.Load(), v, at, t1)
	}
}

// TestErrorsAreNotCached: a failed fetch is returned, and the next caller fetches again.
func TestErrorsAreNotCached(t *testing.T) {
	c, _ := newCache(t, 10, time.Minute)
	boom := errors.New("prometheus down")
	var runs int
	fetch := func(context.Context) (int, error) {
		runs++
		if runs == 1 {
			return 0, boom
		}
		return 7, nil
	}
	if _, _, _, err := c.Get(context.Background(), key, time.Minute, fetch); !errors.Is(err, boom) {
		t.Fatalf("err %v, want %v", err, boom)
	}
	if c.Len() != 0 {
		t.Errorf("an error was kept: %d entries", c.Len())
	}
	v, _, how, err := c.Get(context.Background(), key, time.Minute, fetch)
	if err != nil || v != 7 || how != Miss || runs != 2 {
		t.Errorf("after an error: %d, %s, %v, runs %d; want 7, miss, nil, 2", v, how, err, runs)
	}
}

// TestKeysAreSeparate: any field that differs, backend and tenant included, is another answer.
func TestKeysAreSeparate(t *testing.T) {
	other := func(change func(*Key)) Key {
		k := key
		change(&k)
		return k
	}
	tests := []struct {
		name string
		key  Key
		hit  bool
	}{
		{"same key", key, true},
		{"another backend", other(func(k *Key) { k.Backend = "thanos" }), false},
		{"another tenant", other(func(k *Key) { k.Tenant = "team-a" }), false},
		{"another namespace", other(func(k *Key) { k.Query = `sum by (pod) (x{namespace="bank"})` }), false},
		{"another metric selector", other(func(k *Key) { k.Query = `sum by (pod) (x{code="200",namespace="shop"})` }), false},
		{"another label", other(func(k *Key) { k.Label = "" }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCache(t, 10, time.Minute)
			var f counter
			if _, _, _, err := c.Get(context.Background(), key, time.Minute, f.fetch); err != nil {
				t.Fatal(err)
			}
			v, _, how, err := c.Get(context.Background(), tc.key, time.Minute, f.fetch)
			if err != nil {
				t.Fatal(err)
			}
			if hit := how == Hit && v == 1; hit != tc.hit {
				t.Errorf("got %d (%s); want shared %v", v, how, tc.hit)
			}
		})
	}
}

// TestBounded: past maxEntries the least recently stored answer goes; answers older than maxAge
// are dropped.
func TestBounded(t *testing.T) {
	c, clk := newCache(t, 3, time.Minute)
	var f counter
	keyN := func(i int) Key { k := key; k.Query += string(rune('a' + i)); return k }
	for i := range 5 {
		if _, _, _, err := c.Get(context.Background(), keyN(i), time.Minute, f.fetch); err != nil {
			t.Fatal(err)
		}
		clk.Step(time.Second)
	}
	if c.Len() != 3 {
		t.Errorf("%d entries, want 3", c.Len())
	}
	for i, want := range []Outcome{Hit, Hit, Hit} {
		if _, _, how, _ := c.Get(context.Background(), keyN(i+2), time.Minute, f.fetch); how != want {
			t.Errorf("key %d: %s, want %s", i+2, how, want)
		}
	}
	if _, _, how, _ := c.Get(context.Background(), keyN(0), time.Minute, f.fetch); how != Miss {
		t.Errorf("evicted key 0: %s, want miss", how)
	}
	clk.Step(time.Minute + 1)
	if _, _, _, err := c.Get(context.Background(), keyN(9), time.Second, f.fetch); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Errorf("%d entries after every other one aged past maxAge, want 1", c.Len())
	}
}

// TestCallerLeaves: a caller whose context ends stops waiting with its context's error; the fetch
// goes on, uncancelled, for the others.
func TestCallerLeaves(t *testing.T) {
	c, _ := newCache(t, 10, time.Minute)
	entered, release := make(chan struct{}), make(chan struct{})
	var fetchErr error
	fetch := func(ctx context.Context) (int, error) {
		close(entered)
		<-release
		fetchErr = ctx.Err()
		return 5, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := c.Get(ctx, key, time.Minute, fetch)
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	close(release)
	v, _, _, err := c.Get(context.Background(), key, time.Minute, fetch)
	if err != nil || v != 5 || fetchErr != nil {
		t.Errorf("after the caller left: %d, %v, fetch ctx %v; want 5, nil, nil", v, err, fetchErr)
	}
}

// TestAnswersLeaveAtTheirBound: an answer is dropped once older than the longest bound it was
// asked with; a full cache drops such answers before it evicts one that may still serve.
func TestAnswersLeaveAtTheirBound(t *testing.T) {
	c, clk := newCache(t, 3, time.Hour)
	var f counter
	keyN := func(s string) Key { k := key; k.Query += s; return k }
	for _, step := range []struct {
		key   string
		bound time.Duration
	}{{"a", time.Minute}, {"b", time.Second}, {"c", time.Minute}} {
		if _, _, _, err := c.Get(context.Background(), keyN(step.key), step.bound, f.fetch); err != nil {
			t.Fatal(err)
		}
		clk.Step(time.Second)
	}
	clk.Step(2 * time.Second) // b, asked for with 1s, serves no one now; a and c still may
	if _, _, _, err := c.Get(context.Background(), keyN("d"), time.Minute, f.fetch); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, _, how, _ := c.Get(context.Background(), keyN(k), time.Minute, f.fetch); how != Hit {
			t.Errorf("%s: %s, want hit (b should have gone first)", k, how)
		}
	}
	if c.Len() != 3 {
		t.Errorf("%d entries, want 3", c.Len())
	}
	clk.Step(time.Minute + 1) // past every bound a, c and d were asked with
	if _, _, _, err := c.Get(context.Background(), keyN("e"), time.Second, f.fetch); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Errorf("%d entries past their bounds, want 1: each answer left at its bound", c.Len())
	}
}
