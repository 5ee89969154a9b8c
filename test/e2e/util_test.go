//go:build e2e

package e2e

// Helpers shared by the e2e tests of both tiers (make test, and make test-peers' build tag peers).

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// ms is d in milliseconds, for the benchmarks' tables.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// setReplicasTB sets the Deployment's replicas through its /scale subresource.
func setReplicasTB(t testing.TB, name string, n int32) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := st.Kube.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = n
		_, err = st.Kube.AppsV1().Deployments(ns).UpdateScale(ctx, name, sc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// replicasTB is the Deployment's spec.replicas (-1 if unset).
func replicasTB(t testing.TB, name string) int32 {
	t.Helper()
	d, err := st.Kube.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(d.Spec.Replicas, -1)
}
