package leaderlock

import (
	"context"
	"errors"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
)

// TestReleaseLeavesAnotherHoldersLease: client-go's release reads the Lease and writes an empty holder when its
// own record of the last term (stale after an outage) says it leads. The read carries the current
// resourceVersion, so a real API server accepts the write: without the guard, wake-a cleared the Lease wake-b had
// taken over (seen once in CI as wake-a leading again at once). Its own Lease it still releases.
func TestReleaseLeavesAnotherHoldersLease(t *testing.T) {
	for _, tc := range []struct {
		holder      string
		wantRelease bool
	}{
		{"wake-b", false},
		{"wake-a", true},
	} {
		t.Run(tc.holder, func(t *testing.T) {
			ctx := context.Background()
			now := metav1.NowMicro()
			kube := fake.NewSimpleClientset(&coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: "custom-metrics", Name: "promql-wake"},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(tc.holder), LeaseDurationSeconds: ptr.To[int32](15), RenewTime: &now},
			})
			lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "custom-metrics", "promql-wake", kube.CoreV1(), kube.CoordinationV1(),
				resourcelock.ResourceLockConfig{Identity: "wake-a"})
			if err != nil {
				t.Fatal(err)
			}
			rl := Wrap(lock)
			if _, _, err := rl.Get(ctx); err != nil {
				t.Fatal(err)
			}
			// What client-go's release writes.
			err = rl.Update(ctx, resourcelock.LeaderElectionRecord{LeaseDurationSeconds: 1, RenewTime: metav1.Now(), AcquireTime: metav1.Now()})
			lease, gerr := kube.CoordinationV1().Leases("custom-metrics").Get(ctx, "promql-wake", metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			got := ptr.Deref(lease.Spec.HolderIdentity, "")
			if tc.wantRelease {
				if err != nil || got != "" {
					t.Fatalf("releasing its own Lease: %v, holder now %q", err, got)
				}
				return
			}
			if !errors.Is(err, ErrHeldElsewhere) || got != tc.holder {
				t.Fatalf("releasing %s's Lease: err %v, holder now %q; want ErrHeldElsewhere and the holder kept", tc.holder, err, got)
			}
		})
	}
}

// TestLastRenewIsOwnWritesOnly: only a successful write naming this replica counts as a renewal.
func TestLastRenewIsOwnWritesOnly(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewSimpleClientset()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "ns", "l", kube.CoreV1(), kube.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	rl := Wrap(lock)
	if !rl.LastRenew().IsZero() {
		t.Fatal("renewed before any write")
	}
	before := time.Now()
	if err := rl.Create(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "a", LeaseDurationSeconds: 15}); err != nil {
		t.Fatal(err)
	}
	first := rl.LastRenew()
	if first.Before(before) {
		t.Fatalf("Create as holder not recorded: %v", first)
	}
	if err := rl.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "b", LeaseDurationSeconds: 15}); err != nil {
		t.Fatal(err)
	}
	if rl.LastRenew() != first {
		t.Error("a write naming another holder counted as this replica's renewal")
	}
	if err := rl.Create(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "a"}); err == nil {
		t.Fatal("second Create of the same Lease succeeded")
	}
	if rl.LastRenew() != first {
		t.Error("a failed write counted as a renewal")
	}
}
