package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/promql-adapter/promql-adapter/wake"
)

// WakeServiceAccount is the identity deploy/wake-rbac.yaml grants the 0↔1 controller.
const WakeServiceAccount = "promql-wake"

// Wake is a promql-wake controller replica running in this process.
type Wake struct {
	URL    string // its push endpoint, http://127.0.0.1:port
	Token  string // the bearer token pushes must carry
	cancel context.CancelFunc
	done   chan error

	stopOnce sync.Once
	stopErr  error
}

// WakeOptions are the less usual ways to start a replica.
type WakeOptions struct {
	Controller wake.ControllerOptions
	Election   wake.ElectionTiming // zero: promql-wake's defaults
	// APIServer, if set, is the host:port the replica reaches kube-apiserver at instead of the real
	// one (a proxy a test controls); kube-apiserver's certificate must be valid for its address.
	APIServer string
}

// StartWake runs one promql-wake replica with the ServiceAccount and RBAC of deploy/wake-rbac.yaml,
// leader election on, serving its push endpoint on 127.0.0.1. Stop it with Wake.Stop.
func (s *Stack) StartWake(ctx context.Context, id string, opts wake.ControllerOptions) (*Wake, error) {
	return s.StartWakeWith(ctx, id, WakeOptions{Controller: opts})
}

// StartWakeWith is StartWake with WakeOptions.
func (s *Stack) StartWakeWith(ctx context.Context, id string, o WakeOptions) (*Wake, error) {
	kc, err := s.ServiceAccountKubeconfig(ctx, AdapterNamespace, WakeServiceAccount)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return nil, err
	}
	if o.APIServer != "" {
		cfg.Host = "https://" + o.APIServer
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	w := &Wake{URL: "http://" + ln.Addr().String(), Token: hex.EncodeToString(b), cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		w.done <- wake.Run(wctx, wake.Config{
			Kube: cfg, Identity: id, LeaseNamespace: AdapterNamespace, LeaseName: "promql-wake", LeaderElection: true,
			Election: o.Election, Listener: ln, Token: w.Token, Controller: o.Controller, Ready: ready,
		})
	}()
	select {
	case <-ready:
		return w, nil
	case err := <-w.done:
		cancel()
		return nil, fmt.Errorf("promql-wake %s: %v", id, err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, fmt.Errorf("promql-wake %s not ready within 30s", id)
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
}

// Stop stops the replica (releasing its Lease) and waits for it; later calls return the first result.
func (w *Wake) Stop() error {
	w.stopOnce.Do(func() {
		w.cancel()
		select {
		case w.stopErr = <-w.done:
		case <-time.After(30 * time.Second): // it releases the Lease first, which may wait out a renew deadline
			w.stopErr = fmt.Errorf("promql-wake did not stop within 30s")
		}
	})
	return w.stopErr
}
