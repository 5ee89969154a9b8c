package wake

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
)

// waitFor polls cond every 20ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestElectStopsActingAndCampaignsAgain: the leader loses the API server (every Lease request fails);
// its term ends within the renew deadline, while another replica takes the Lease it stops acting for
// good, and when that one goes away it campaigns and leads again. client-go's LeaderElector.Run alone
// returns after the first lost term and never campaigns again. On the way out the Lease is released.
func TestElectStopsActingAndCampaignsAgain(t *testing.T) {
	kube := fake.NewSimpleClientset()
	var outage atomic.Bool
	kube.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if outage.Load() {
			return true, nil, errors.New("dial tcp: i/o timeout")
		}
		return false, nil, nil
	})
	// Optimistic concurrency, as kube-apiserver has it and the fake tracker has not: an update carrying a
	// stale resourceVersion is a conflict. Without it, wake-a's release of the term it lost (sent as the
	// outage ends) could overwrite wake-b's renewal, which a real API server refuses with 409.
	kube.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		le := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		cur, err := kube.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), le.Namespace, le.Name)
		if err == nil && le.ResourceVersion != cur.(*coordinationv1.Lease).ResourceVersion {
			return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), le.Name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "custom-metrics", "promql-wake", kube.CoreV1(), kube.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: "wake-a"})
	if err != nil {
		t.Fatal(err)
	}
	timing := ElectionTiming{LeaseDuration: 1500 * time.Millisecond, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}
	l := NewLeadership()
	var terms atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var electErr error
	wg.Go(func() { electErr = Elect(ctx, lock, timing, l, func() { terms.Add(1) }) })
	defer func() { cancel(); wg.Wait() }()

	waitFor(t, 5*time.Second, "wake-a leads", func() bool { term, _ := l.Leading(); return term != nil })
	term, _ := l.Leading()

	outage.Store(true)
	lost := time.Now()
	select {
	case <-term.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the term did not end while the Lease could not be renewed")
	}
	// It stopped acting before a standby could take over (LeaseDuration after the last renewal).
	if took := time.Since(lost); took > timing.LeaseDuration {
		t.Errorf("the term ended %s after the outage began, later than the lease duration %s", took, timing.LeaseDuration)
	}
	if term, _ := l.Leading(); term != nil {
		t.Fatal("Leading() still returns a term after it ended")
	}

	// Meanwhile wake-b takes the Lease and renews it.
	renewB := func() {
		t.Helper()
		lease, err := kube.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), "custom-metrics", "promql-wake")
		if err != nil {
			t.Fatal(err)
		}
		le := lease.(*coordinationv1.Lease).DeepCopy()
		now := metav1.NowMicro()
		le.Spec.HolderIdentity, le.Spec.RenewTime = ptr.To("wake-b"), &now
		rv, _ := strconv.Atoi(le.ResourceVersion)
		le.ResourceVersion = strconv.Itoa(rv + 1)
		if err := kube.Tracker().Update(coordinationv1.SchemeGroupVersion.WithResource("leases"), le, "custom-metrics"); err != nil {
			t.Fatal(err)
		}
	}
	renewB()
	outage.Store(false)
	// While wake-b renews, wake-a campaigns but does not lead, and stays healthy.
	for range 15 {
		renewB()
		time.Sleep(100 * time.Millisecond)
		if term, _ := l.Leading(); term != nil {
			t.Fatal("wake-a leads while wake-b holds a valid Lease")
		}
		if err := l.Ended(); err != nil {
			t.Fatalf("the election ended: %v", err)
		}
	}
	// wake-b stops renewing: wake-a takes over once the Lease expires.
	waitFor(t, 10*time.Second, "wake-a leads again", func() bool { term, _ := l.Leading(); return term != nil })
	if n := terms.Load(); n != 2 {
		t.Errorf("%d terms started, want 2", n)
	}

	cancel()
	wg.Wait()
	if electErr != nil {
		t.Errorf("Elect: %v", electErr)
	}
	lease, err := kube.CoordinationV1().Leases("custom-metrics").Get(context.Background(), "promql-wake", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(lease.Spec.HolderIdentity, ""); h != "" {
		t.Errorf("after shutdown the Lease is still held by %q; it must be released", h)
	}
	if l.Ended() == nil {
		t.Error("Ended() is nil after Elect returned")
	}
}
