package apiservice

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggfake "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset/fake"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/leaderlock"
)

const extName = "v1beta1.external.metrics.k8s.io"

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		ok, s := cond()
		last = s
		return ok, nil
	}); err != nil {
		t.Fatalf("%s: not within 10s; last: %s", what, last)
	}
}

func fastOptions(names ...string) Options {
	return Options{Names: names, Service: ours, Lease: "promql-adapter-apiservices", Identity: "replica-a",
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond, Resync: time.Hour}
}

// TestControllerClaimsAndReasserts: the leader points KEDA's APIService at our Service with our CA, records an
// Event, puts both back after KEDA's chart (service) and KEDA's operator (caBundle) rewrite them, and /readyz's check
// says whether it is held; an APIService that does not exist is reported, never created.
func TestControllerClaimsAndReasserts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keda := apiSvc("keda", "keda-operator-metrics-apiserver", ptr.To[int32](443), "", false)
	agg := aggfake.NewClientset(keda)
	kube := kubefake.NewClientset()
	rec := record.NewFakeRecorder(100)
	o := fastOptions(extName, "v1beta2.custom.metrics.k8s.io")
	o.CABundle = func() ([]byte, error) { return []byte("OUR-CA"), nil }
	o.Recorder = rec
	c, err := New(kube, agg, o)
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)

	get := func() *apiregv1.APIService {
		a, err := agg.ApiregistrationV1().APIServices().Get(ctx, extName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	held := func() (bool, string) {
		a := get()
		return Decide(a, ours, []byte("OUR-CA")).Held, a.Spec.Service.Namespace + "/" + a.Spec.Service.Name + " " + string(a.Spec.CABundle)
	}
	waitFor(t, "claimed", held)
	waitFor(t, "an Event", func() (bool, string) {
		select {
		case e := <-rec.Events:
			return strings.HasPrefix(e, "Normal Claimed") && strings.Contains(e, "service keda/keda-operator-metrics-apiserver:443 -> custom-metrics/promql-adapter:443"), e
		default:
			return false, "none"
		}
	})
	if !c.Leading() {
		t.Error("the only replica does not lead")
	}
	waitFor(t, "the check names the absent APIService", func() (bool, string) {
		err := c.Check(nil)
		return err != nil && strings.Contains(err.Error(), "v1beta2.custom.metrics.k8s.io: absent") && !strings.Contains(err.Error(), extName), errStr(err)
	})
	if _, err := agg.ApiregistrationV1().APIServices().Get(ctx, "v1beta2.custom.metrics.k8s.io", metav1.GetOptions{}); err == nil {
		t.Error("an absent APIService was created")
	}

	// KEDA's chart upgrade writes its Service back; KEDA's operator its CA.
	for _, rewrite := range []func(*apiregv1.APIService){
		func(a *apiregv1.APIService) {
			a.Spec.Service.Namespace, a.Spec.Service.Name = "keda", "keda-operator-metrics-apiserver"
		},
		func(a *apiregv1.APIService) { a.Spec.CABundle = []byte("KEDA-CA") },
	} {
		a := get()
		rewrite(a)
		if _, err := agg.ApiregistrationV1().APIServices().Update(ctx, a, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "claimed again", held)
	}
	waitFor(t, "Held as the cache shows it", func() (bool, string) {
		h := c.Held()
		return h[extName] && !h["v1beta2.custom.metrics.k8s.io"], fmt.Sprint(h)
	})
}

// TestControllerStandby: a replica that does not lead writes nothing, but its check reports what it sees.
func TestControllerStandby(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agg := aggfake.NewClientset(apiSvc("keda", "keda-operator-metrics-apiserver", ptr.To[int32](443), "", false))
	kube := kubefake.NewClientset()
	// Another replica holds the Lease, renewed far in the future.
	leaseHeldBy(t, kube, "replica-b")
	o := fastOptions(extName)
	o.Recorder = record.NewFakeRecorder(10)
	c, err := New(kube, agg, o)
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	waitFor(t, "the standby reports KEDA's Service", func() (bool, string) {
		err := c.Check(nil)
		return err != nil && strings.Contains(err.Error(), `not held (leader "replica-b")`) && strings.Contains(err.Error(), "points at keda/"), errStr(err)
	})
	time.Sleep(300 * time.Millisecond)
	a, _ := agg.ApiregistrationV1().APIServices().Get(ctx, extName, metav1.GetOptions{})
	if a.Spec.Service.Namespace != "keda" || c.Leading() {
		t.Errorf("a standby wrote the APIService (%s) or leads (%v)", a.Spec.Service.Namespace, c.Leading())
	}
}

// TestControllerDisowns: after writing, the controller removes its own managedFields entry, so that a later
// server-side apply of the other owner (Helm 4) meets no conflict; other managers' entries stay.
func TestControllerDisowns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := apiSvc("custom-metrics", "promql-adapter", ptr.To[int32](443), "OUR-CA", false)
	a.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "helm", Operation: metav1.ManagedFieldsOperationApply}, {Manager: FieldManager, Operation: metav1.ManagedFieldsOperationUpdate}}
	agg := aggfake.NewClientset(a)
	o := fastOptions(extName)
	o.CABundle = func() ([]byte, error) { return []byte("OUR-CA"), nil }
	o.Recorder = record.NewFakeRecorder(10)
	c, err := New(kubefake.NewClientset(), agg, o)
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	// The fake clientset keeps managedFields its own way: check the patch sent, which the e2e test's real
	// kube-apiserver applies (a later Helm upgrade meets no conflict).
	waitFor(t, "a JSON patch removing our managedFields entry", func() (bool, string) {
		var seen []string
		for _, a := range agg.Actions() {
			if p, ok := a.(clienttesting.PatchAction); ok && p.GetPatchType() == types.JSONPatchType {
				seen = append(seen, string(p.GetPatch()))
				if strings.Contains(string(p.GetPatch()), `{"op":"test","path":"/metadata/managedFields/1/manager","value":"promql-adapter"},{"op":"remove","path":"/metadata/managedFields/1"}`) {
					return true, ""
				}
			}
		}
		return false, strings.Join(seen, " | ")
	})
}

// TestCertSecret: the leader makes the CA and certificate once, a restart reuses them, a certificate near its end
// is renewed with the same CA, and the served certificate follows the Secret.
func TestCertSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := kubefake.NewClientset()
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	newCS := func() *CertSecret {
		return &CertSecret{SecretNamespace: "custom-metrics", SecretName: "promql-adapter-tls", DNSNames: ours.DNSNames(), Client: kube,
			Now: func() time.Time { return now }}
	}
	s := newCS()
	if did, err := s.Ensure(ctx); err != nil || did != "created a CA and a serving certificate" {
		t.Fatalf("Ensure: %q %v", did, err)
	}
	ca1, _ := s.CABundle()
	cert1, _ := s.CurrentCertKeyContent()
	leaf := parseCert(t, cert1)
	if !strings.Contains(strings.Join(leaf.DNSNames, ","), "promql-adapter.custom-metrics.svc") {
		t.Errorf("DNS names %v", leaf.DNSNames)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca1)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "promql-adapter.custom-metrics.svc", CurrentTime: now}); err != nil {
		t.Errorf("the certificate does not verify with the Secret's CA: %v", err)
	}

	// A restarted replica (a new CertSecret) reuses both.
	s2 := newCS()
	if did, err := s2.Ensure(ctx); err != nil || did != "" {
		t.Fatalf("Ensure after restart: %q %v", did, err)
	}
	if ca2, _ := s2.CABundle(); string(ca2) != string(ca1) {
		t.Error("a restart made a new CA")
	}
	// A replica watching the Secret serves it and is told of changes.
	w := newCS()
	n := &countListener{}
	w.AddListener(n)
	go w.Run(ctx)
	waitFor(t, "the watcher serves the Secret", func() (bool, string) {
		c, _ := w.CurrentCertKeyContent()
		return string(c) == string(cert1), "other"
	})

	// Past two thirds of its validity: renewed, same CA.
	now = now.Add(ServingValidity * 2 / 3).Add(time.Hour)
	did, err := s2.Ensure(ctx)
	if err != nil || !strings.HasPrefix(did, "renewed the serving certificate: it expires at") {
		t.Fatalf("Ensure near expiry: %q %v", did, err)
	}
	if ca3, _ := s2.CABundle(); string(ca3) != string(ca1) {
		t.Error("renewal changed the CA")
	}
	waitFor(t, "the watcher serves the renewed certificate", func() (bool, string) {
		c, _ := w.CurrentCertKeyContent()
		return string(c) != string(cert1) && n.n.Load() >= 2, "old"
	})
}

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func errStr(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// leaseHeldBy makes the controller's Lease held by another replica for an hour.
func leaseHeldBy(t *testing.T, kube *kubefake.Clientset, id string) {
	t.Helper()
	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "promql-adapter-apiservices", Namespace: ours.Namespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(id), LeaseDurationSeconds: ptr.To[int32](3600), AcquireTime: &now, RenewTime: &now}}
	if _, err := kube.CoordinationV1().Leases(ours.Namespace).Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type countListener struct{ n atomic.Int32 }

func (c *countListener) Enqueue() { c.n.Add(1) }

// TestControllerWithoutCA: when our CA cannot be read (a mounted ca.crt missing), the service reference is still
// claimed, the caBundle is left, and the check says why the APIService is not fully held.
func TestControllerWithoutCA(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agg := aggfake.NewClientset(apiSvc("keda", "keda-operator-metrics-apiserver", ptr.To[int32](443), "KEDA-CA", false))
	o := fastOptions(extName)
	o.CABundle = func() ([]byte, error) { return nil, errors.New("--apiservice-ca-file: no such file") }
	o.Recorder = record.NewFakeRecorder(10)
	c, err := New(kubefake.NewClientset(), agg, o)
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	waitFor(t, "the service claimed without a CA", func() (bool, string) {
		a, _ := agg.ApiregistrationV1().APIServices().Get(ctx, extName, metav1.GetOptions{})
		return a.Spec.Service.Namespace == ours.Namespace && string(a.Spec.CABundle) == "KEDA-CA", a.Spec.Service.Namespace
	})
	if err := c.Check(nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Check: %v", err)
	}
}

// TestControllerFailover: two replicas share one Lease; only the leader writes. When it stops (its Lease
// released), the other takes over and puts back a rewrite made meanwhile.
func TestControllerFailover(t *testing.T) {
	agg := aggfake.NewClientset(apiSvc("keda", "keda-operator-metrics-apiserver", ptr.To[int32](443), "", false))
	kube := kubefake.NewClientset()
	start := func(id string) (*Controller, context.CancelFunc) {
		o := fastOptions(extName)
		o.Identity = id
		o.CABundle = func() ([]byte, error) { return []byte("OUR-CA"), nil }
		o.Recorder = record.NewFakeRecorder(10)
		c, err := New(kube, agg, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		return c, func() { cancel(); <-done }
	}
	a, stopA := start("replica-a")
	waitFor(t, "replica-a leads", func() (bool, string) { return a.Leading(), "no" })
	b, stopB := start("replica-b")
	defer stopB()
	waitFor(t, "claimed", func() (bool, string) { return b.Check(nil) == nil, errStr(b.Check(nil)) })
	if b.Leading() {
		t.Fatal("two leaders")
	}
	stopA()
	ext, _ := agg.ApiregistrationV1().APIServices().Get(context.Background(), extName, metav1.GetOptions{})
	ext.Spec.Service.Namespace = "keda"
	if _, err := agg.ApiregistrationV1().APIServices().Update(context.Background(), ext, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica-b leads and claims it again", func() (bool, string) {
		x, _ := agg.ApiregistrationV1().APIServices().Get(context.Background(), extName, metav1.GetOptions{})
		return b.Leading() && x.Spec.Service.Namespace == ours.Namespace, fmt.Sprintf("leading %v, %s", b.Leading(), x.Spec.Service.Namespace)
	})
}

// TestControllerLeavesAnotherHoldersLease: the controller's election releases only its own Lease. client-go's
// release writes an empty holder whenever its stale record of the last term says it leads; the Lease a standby took
// over after an outage stays the standby's (see package leaderlock).
func TestControllerLeavesAnotherHoldersLease(t *testing.T) {
	ctx := context.Background()
	kube := kubefake.NewClientset()
	leaseHeldBy(t, kube, "replica-b")
	c, err := New(kube, aggfake.NewClientset(), fastOptions(extName))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := c.lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := lock.Get(ctx); err != nil {
		t.Fatal(err)
	}
	// What client-go's release writes.
	err = lock.Update(ctx, resourcelock.LeaderElectionRecord{LeaseDurationSeconds: 1, RenewTime: metav1.Now(), AcquireTime: metav1.Now()})
	lease, gerr := kube.CoordinationV1().Leases(ours.Namespace).Get(ctx, "promql-adapter-apiservices", metav1.GetOptions{})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if got := ptr.Deref(lease.Spec.HolderIdentity, ""); !errors.Is(err, leaderlock.ErrHeldElsewhere) || got != "replica-b" {
		t.Fatalf("releasing replica-b's Lease: err %v, holder now %q; want ErrHeldElsewhere and replica-b kept", err, got)
	}
}
