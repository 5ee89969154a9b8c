// Package podsvc serves a Kubernetes Service from processes that run on loopback, as kubelet
// and the EndpointSlice controller would for real pods. Each backend gets a pod address of a
// podnet.Net (EndpointSlices refuse loopback addresses) whose connections are relayed to the
// process; the Service has no selector and the harness keeps its one EndpointSlice in step with
// the backends: an endpoint turns not ready as soon as its process has exited (kubelet's PLEG
// notices a dead container within its 1 s relist) or after FailureThreshold failed readiness
// probes in a row (kubelet's readiness probe), and ready again after one good probe.
package podsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/podnet"
)

// PortName is the name of the Service's one port and of the EndpointSlice's port.
const PortName = "https"

// ManagedBy marks the EndpointSlice as the harness's, so kube-controller-manager leaves it alone.
const ManagedBy = "podsvc.promql-adapter.test"

// Options configures New.
type Options struct {
	Namespace, Name  string        // the Service
	Port             int32         // the Service's port (the APIService's service.port)
	TargetPort       int32         // the port every pod address listens on
	Period           time.Duration // probe period; default 1s (kubelet's PLEG relist period)
	FailureThreshold int           // failed probes before not ready; default 3 (kubelet's default)
	Logf             func(format string, args ...any)
}

// Backend is one pod: a process on loopback behind a pod address.
type Backend struct {
	Name   string                          // the pod's name, in the endpoint's targetRef
	IP     net.IP                          // its pod address, in the Net's CIDR
	Target string                          // where its process listens, e.g. 127.0.0.1:port
	Exited func() bool                     // whether the process has exited (a dead container)
	Probe  func(ctx context.Context) error // the readiness probe
}

// Transition is one change of an endpoint's readiness, as written to the EndpointSlice.
type Transition struct {
	Backend string
	Ready   bool
	At      time.Time
}

type backend struct {
	Backend
	fwd      *podnet.Forwarder
	ready    bool
	failures int
}

// Service is a selector-less Service whose EndpointSlice the harness maintains.
type Service struct {
	opts Options
	kube kubernetes.Interface
	net  *podnet.Net

	mu          sync.Mutex
	backends    []*backend
	transitions []Transition
	cancel      context.CancelFunc
	done        chan struct{}
}

// New replaces any Service of that name with a selector-less ClusterIP Service, creates its
// (empty) EndpointSlice and starts probing; Add adds backends. Close stops everything.
func New(ctx context.Context, kube kubernetes.Interface, n *podnet.Net, opts Options) (*Service, error) {
	if opts.Period == 0 {
		opts.Period = time.Second
	}
	if opts.FailureThreshold == 0 {
		opts.FailureThreshold = 3
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	svcs := kube.CoreV1().Services(opts.Namespace)
	if err := svcs.Delete(ctx, opts.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("podsvc: delete service %s/%s: %w", opts.Namespace, opts.Name, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: opts.Name, Namespace: opts.Namespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: PortName, Port: opts.Port, TargetPort: intstr.FromInt32(opts.TargetPort), Protocol: corev1.ProtocolTCP,
		}}},
	}
	if _, err := svcs.Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("podsvc: create service %s/%s: %w", opts.Namespace, opts.Name, err)
	}
	s := &Service{opts: opts, kube: kube, net: n, done: make(chan struct{})}
	if err := s.write(ctx); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(bg)
	return s, nil
}

// Add relays the backend's pod address to its process and lists it, not ready until its first
// good probe.
func (s *Service) Add(b Backend) error {
	if !s.net.Contains(b.IP) {
		return fmt.Errorf("podsvc: %s: %s is outside %s", b.Name, b.IP, s.net.CIDR)
	}
	fwd, err := s.net.Forward(net.JoinHostPort(b.IP.String(), strconv.Itoa(int(s.opts.TargetPort))), b.Target)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.backends = append(s.backends, &backend{Backend: b, fwd: fwd})
	s.mu.Unlock()
	return nil
}

// Ready lists the names of the backends whose endpoints are ready now.
func (s *Service) Ready() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.backends {
		if b.ready {
			out = append(out, b.Name)
		}
	}
	return out
}

// Transitions returns every readiness change written so far.
func (s *Service) Transitions() []Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Transition(nil), s.transitions...)
}

// run probes every backend each period and writes the EndpointSlice when readiness changes.
func (s *Service) run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.opts.Period)
	defer tick.Stop()
	for {
		if s.probe(ctx) {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := s.write(wctx); err != nil && ctx.Err() == nil {
				s.opts.Logf("podsvc: %v", err)
				s.mu.Lock()
				for _, b := range s.backends {
					b.failures = -1 // force a rewrite on the next round
				}
				s.mu.Unlock()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe updates every backend's readiness and reports whether any changed.
func (s *Service) probe(ctx context.Context) bool {
	s.mu.Lock()
	bs := append([]*backend(nil), s.backends...)
	s.mu.Unlock()
	changed := false
	for _, b := range bs {
		var ok bool
		if !b.Exited() {
			pctx, cancel := context.WithTimeout(ctx, s.opts.Period)
			ok = b.Probe(pctx) == nil
			cancel()
		}
		s.mu.Lock()
		rewrite := b.failures < 0
		was := b.ready
		switch {
		case b.Exited():
			b.ready, b.failures = false, s.opts.FailureThreshold
		case ok:
			b.ready, b.failures = true, 0
		default:
			if b.failures < 0 {
				b.failures = 0
			}
			b.failures++
			if b.failures >= s.opts.FailureThreshold {
				b.ready = false
			}
		}
		if b.ready != was {
			s.transitions = append(s.transitions, Transition{Backend: b.Name, Ready: b.ready, At: time.Now()})
			s.opts.Logf("podsvc: %s ready=%v", b.Name, b.ready)
		}
		changed = changed || rewrite || b.ready != was
		s.mu.Unlock()
	}
	return changed
}

// write creates or updates the EndpointSlice from the backends' readiness.
func (s *Service) write(ctx context.Context) error {
	s.mu.Lock()
	eps := []discoveryv1.Endpoint{}
	for _, b := range s.backends {
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{b.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(b.ready), Serving: ptr.To(b.ready), Terminating: ptr.To(false)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: s.opts.Namespace, Name: b.Name},
		})
	}
	s.mu.Unlock()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.opts.Name + "-harness", Namespace: s.opts.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: s.opts.Name, discoveryv1.LabelManagedBy: ManagedBy},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(PortName), Port: ptr.To(s.opts.TargetPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	api := s.kube.DiscoveryV1().EndpointSlices(s.opts.Namespace)
	cur, err := api.Get(ctx, slice.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, slice, metav1.CreateOptions{})
	case err == nil:
		slice.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(ctx, slice, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("podsvc: write EndpointSlice %s/%s: %w", s.opts.Namespace, slice.Name, err)
	}
	return nil
}

// Close stops probing and closes every relay; the Service and EndpointSlice stay.
func (s *Service) Close() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	<-s.done
	s.cancel = nil
	var errs []error
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.backends {
		errs = append(errs, b.fwd.Close())
	}
	return errors.Join(errs...)
}
