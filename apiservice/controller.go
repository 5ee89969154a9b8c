package apiservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	aggscheme "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset/scheme"

	"github.com/promql-adapter/promql-adapter/leaderlock"
)

// Event reasons the controller records on an APIService.
const (
	ReasonClaimed = "Claimed" // we wrote our service reference or CA into it
	ReasonFailed  = "ClaimFailed"
)

// CheckName is the /readyz check that says whether every claimed APIService is held.
const CheckName = "apiservices"

// Options configure the controller.
type Options struct {
	Names   []string // the APIServices to claim
	Service Service  // the Service they must point at
	// CABundle returns the caBundle they must carry; nil (the function) leaves caBundle alone.
	CABundle func() ([]byte, error)
	// Certs, when set, is kept by the leader (CertSecret.Ensure) and its CA is the caBundle.
	Certs *CertSecret
	// Lease is the leader election's Lease, in Service's namespace; Identity names this replica.
	Lease, Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election (defaults 15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Resync is how often the leader checks every APIService and the Secret without an event (default 30s).
	Resync time.Duration
	// Recorder records Events; nil means Events through Kube.
	Recorder record.EventRecorder
}

// Controller claims APIServices and keeps them ours.
type Controller struct {
	o       Options
	kube    kubernetes.Interface
	agg     aggregator.Interface
	queue   workqueue.TypedRateLimitingInterface[string]
	stores  map[string]cache.Store
	synced  []cache.InformerSynced
	leading atomic.Bool
	rec     record.EventRecorder

	mu     sync.Mutex
	reason map[string]string // name → why it is not held ("" when held); absent: not seen yet
	leader string
}

// New returns a controller; Run starts it.
func New(kube kubernetes.Interface, agg aggregator.Interface, o Options) (*Controller, error) {
	if len(o.Names) == 0 && o.Certs == nil {
		return nil, errors.New("apiservice: no APIService to claim and no Secret to keep")
	}
	for _, n := range o.Names {
		if _, _, err := ParseName(n); err != nil {
			return nil, err
		}
	}
	if o.Resync <= 0 {
		o.Resync = 30 * time.Second
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline <= 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod <= 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.Certs != nil && o.CABundle == nil {
		o.CABundle = o.Certs.CABundle
	}
	c := &Controller{o: o, kube: kube, agg: agg, stores: map[string]cache.Store{}, reason: map[string]string{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "apiservices"})}
	c.rec = o.Recorder
	return c, nil
}

// Run watches the APIServices (each by name), campaigns for the Lease and, while leading, keeps the Secret and the
// APIServices ours. It returns when ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer c.queue.ShutDown()
	if c.rec == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
		defer b.Shutdown()
		scheme := runtime.NewScheme()
		_ = aggscheme.AddToScheme(scheme)
		c.rec = b.NewRecorder(scheme, corev1.EventSource{Component: FieldManager})
	}
	var infs []cache.SharedIndexInformer
	for _, name := range c.o.Names {
		inf := c.informer(name)
		c.stores[name] = inf.GetStore()
		c.synced = append(c.synced, inf.HasSynced)
		infs = append(infs, inf)
	}
	for _, inf := range infs {
		go inf.RunWithContext(ctx)
	}
	if c.o.Certs != nil {
		// A new CA or certificate in the Secret: check every APIService again.
		c.o.Certs.AddListener(enqueueAll{c})
		go c.o.Certs.Run(ctx)
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	for _, n := range c.o.Names {
		c.observe(n)
	}
	go c.worker(ctx)
	c.elect(ctx)
}

// informer watches one APIService by name (a field selector, which RBAC's resourceNames allows).
func (c *Controller) informer(name string) cache.SharedIndexInformer {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	api := c.agg.ApiregistrationV1().APIServices()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return api.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return api.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, c.agg), &apiregv1.APIService{}, 0, cache.Indexers{})
	on := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if a, ok := obj.(*apiregv1.APIService); ok && a.Name == name {
			c.observe(name)
			c.queue.Add(name)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: on, UpdateFunc: func(_, o any) { on(o) }, DeleteFunc: on})
	return inf
}

// get is the cached APIService of that name, nil when absent.
func (c *Controller) get(name string) *apiregv1.APIService {
	st := c.stores[name]
	if st == nil {
		return nil
	}
	obj, ok, err := st.GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	a, _ := obj.(*apiregv1.APIService)
	return a
}

// ca is the caBundle to assert (nil: leave it) or an error when it cannot be read yet.
func (c *Controller) ca() ([]byte, error) {
	if c.o.CABundle == nil {
		return nil, nil
	}
	return c.o.CABundle()
}

// observe records whether the APIService is held now, as this replica's cache shows it.
func (c *Controller) observe(name string) {
	ca, err := c.ca()
	var reason string
	if err != nil {
		reason = err.Error()
	} else if d := Decide(c.get(name), c.o.Service, ca); !d.Held {
		reason = d.Reason
	}
	c.mu.Lock()
	c.reason[name] = reason
	c.mu.Unlock()
}

// Check is the /readyz check: nil when every claimed APIService points at our Service with our CA.
func (c *Controller) Check(*http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var bad []string
	for _, n := range c.o.Names {
		r, seen := c.reason[n]
		if !seen {
			r = "not read yet"
		}
		if r != "" {
			bad = append(bad, n+": "+r)
		}
	}

	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("not held (leader %q): %s", c.leader, strings.Join(bad, "; "))
	}
	return nil
}

// Held reports, for each claimed APIService, whether it is held now.
func (c *Controller) Held() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, n := range c.o.Names {
		r, seen := c.reason[n]
		out[n] = seen && r == ""
	}
	return out
}

// Leading reports whether this replica leads.
func (c *Controller) Leading() bool { return c.leading.Load() }

func (c *Controller) worker(ctx context.Context) {
	for {
		name, quit := c.queue.Get()
		if quit {
			return
		}
		err := c.reconcile(ctx, name)
		c.observe(name)
		if err != nil {
			klog.ErrorS(err, "claiming an APIService", "apiservice", name)
			c.queue.AddRateLimited(name)
		} else {
			c.queue.Forget(name)
		}
		c.queue.Done(name)
	}
}

// reconcile writes our Service and CA into one APIService when this replica leads and it says otherwise.
func (c *Controller) reconcile(ctx context.Context, name string) error {
	if !c.leading.Load() {
		return nil
	}
	// Without our CA (not read yet, or a file missing) the service reference is still asserted; the error
	// retries and /readyz/apiservices shows it.
	ca, caErr := c.ca()
	cur := c.get(name)
	d := Decide(cur, c.o.Service, ca)
	if d.Update == nil {
		if cur != nil {
			return errors.Join(caErr, c.disown(ctx, cur))
		}
		return caErr
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	up, err := c.agg.ApiregistrationV1().APIServices().Update(ctx, d.Update, metav1.UpdateOptions{FieldManager: FieldManager})
	if err != nil {
		if !apierrors.IsConflict(err) {
			c.rec.Eventf(cur, corev1.EventTypeWarning, ReasonFailed, "promql-adapter could not claim this APIService (%s): %v", d.Reason, err)
		}
		return fmt.Errorf("update APIService %s (%s): %w", name, d.Reason, err)
	}
	msg := fmt.Sprintf("promql-adapter claimed this APIService for Service %s: %s", c.o.Service, strings.Join(d.Changes, ", "))
	klog.InfoS("claimed an APIService", "apiservice", name, "was", d.Reason, "changes", d.Changes)
	c.rec.Event(up, corev1.EventTypeNormal, ReasonClaimed, msg)
	return errors.Join(caErr, c.disown(ctx, up))
}

// disown removes our entry from the APIService's managedFields: the fields we wrote stay, but no server-side apply
// of another owner (Helm 4 upgrading KEDA's release) meets a conflict with us; we put them back after it instead.
func (c *Controller) disown(ctx context.Context, a *apiregv1.APIService) error {
	i := slices.IndexFunc(a.ManagedFields, func(e metav1.ManagedFieldsEntry) bool { return e.Manager == FieldManager })
	if i < 0 {
		return nil
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": a.ResourceVersion},
		{"op": "test", "path": fmt.Sprintf("/metadata/managedFields/%d/manager", i), "value": FieldManager},
		{"op": "remove", "path": fmt.Sprintf("/metadata/managedFields/%d", i)},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.agg.ApiregistrationV1().APIServices().Patch(ctx, a.Name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // changed meanwhile: the next event reconciles again
		}
		return fmt.Errorf("drop our field ownership of APIService %s: %w", a.Name, err)
	}
	return nil
}

// elect campaigns for the Lease until ctx ends; a term enqueues every APIService and, every Resync, keeps the
// Secret and checks them again.
func (c *Controller) elect(ctx context.Context) {
	lock, err := c.lock()
	if err != nil {
		klog.ErrorS(err, "apiservice leader election")
		return
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: c.o.LeaseDuration, RenewDeadline: c.o.RenewDeadline, RetryPeriod: c.o.RetryPeriod,
			ReleaseOnCancel: true, Name: "apiservices",
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: c.lead,
				OnStoppedLeading: func() { c.leading.Store(false) },
				OnNewLeader: func(id string) {
					c.mu.Lock()
					c.leader = id
					c.mu.Unlock()
				},
			},
		})
		if err != nil {
			klog.ErrorS(err, "apiservice leader election")
			return
		}
		le.Run(ctx)
		c.leading.Store(false)
		select {
		case <-ctx.Done():
		case <-time.After(c.o.RetryPeriod):
		}
	}
}

// lock is the election's Lease, whose release never clears another replica's hold (package leaderlock).
func (c *Controller) lock() (*leaderlock.Lock, error) {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, c.o.Service.Namespace, c.o.Lease,
		c.kube.CoreV1(), c.kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: c.o.Identity})
	if err != nil {
		return nil, err
	}
	return leaderlock.Wrap(lock), nil
}

// lead is one term: keep the Secret, claim every APIService, and again every Resync, until the term ends.
func (c *Controller) lead(term context.Context) {
	c.leading.Store(true)
	klog.InfoS("leading the APIService claim", "identity", c.o.Identity, "apiservices", c.o.Names, "service", c.o.Service.String())
	t := time.NewTicker(c.o.Resync)
	defer t.Stop()
	for {
		if c.o.Certs != nil {
			ctx, cancel := context.WithTimeout(term, 10*time.Second)
			did, err := c.o.Certs.Ensure(ctx)
			cancel()
			if err != nil {
				klog.ErrorS(err, "keeping the shared TLS Secret")
			} else if did != "" {
				klog.InfoS("shared TLS Secret", "secret", c.o.Certs.Name(), "did", did)
			}
		}
		for _, n := range c.o.Names {
			c.queue.Add(n)
		}
		select {
		case <-term.Done():
			return
		case <-t.C:
		}
	}
}

// enqueueAll checks every APIService again when the shared Secret changes.
type enqueueAll struct{ c *Controller }

func (e enqueueAll) Enqueue() {
	for _, n := range e.c.o.Names {
		e.c.queue.Add(n)
	}
}
