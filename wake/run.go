package wake

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	custommetrics "k8s.io/metrics/pkg/client/custom_metrics"
	externalmetrics "k8s.io/metrics/pkg/client/external_metrics"
)

// Config is everything the controller binary needs.
type Config struct {
	Kube           *rest.Config
	QPS            float32 // kube-apiserver client rate; a sleeping target costs a few requests per poll (default 50)
	Burst          int     // default 100
	Identity       string  // this replica's name in the Lease
	LeaseNamespace string
	LeaseName      string
	LeaderElection bool
	Listen         string // push endpoint and /metrics, e.g. :8443
	Listener       net.Listener
	TLSCertFile    string // serve HTTPS when set
	TLSKeyFile     string
	ClientCAFile   string // client certificates signed by it authenticate pushes
	Token          string // bearer token that authenticates pushes
	Controller     ControllerOptions
	Registry       *prometheus.Registry
	// Ready, if set, is closed once the controller serves and its caches are synced.
	Ready chan<- struct{}
}

// Run starts the controller, the leader election and the push endpoint, until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	cfg.Kube = rest.CopyConfig(cfg.Kube)
	cfg.Kube.QPS, cfg.Kube.Burst = cfg.QPS, cfg.Burst
	if cfg.Kube.QPS <= 0 {
		cfg.Kube.QPS = 50
	}
	if cfg.Kube.Burst <= 0 {
		cfg.Kube.Burst = 100
	}
	kube, err := kubernetes.NewForConfig(cfg.Kube)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg.Kube)
	if err != nil {
		return err
	}
	cached := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	scales, err := scale.NewForConfig(cfg.Kube, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		return fmt.Errorf("scale client: %w", err)
	}
	ext, err := externalmetrics.NewForConfig(cfg.Kube)
	if err != nil {
		return fmt.Errorf("external metrics client: %w", err)
	}
	custom := custommetrics.NewForConfig(cfg.Kube, mapper, custommetrics.NewAvailableAPIsGetter(dc))

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "promql-wake"})

	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if cfg.Controller.Metrics == nil {
		cfg.Controller.Metrics = NewMetrics(reg)
	}

	var le *leaderelection.LeaderElector
	var ctl *Controller
	if cfg.LeaderElection {
		lock, err := resourcelock.New(resourcelock.LeasesResourceLock, cfg.LeaseNamespace, cfg.LeaseName,
			kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: cfg.Identity, EventRecorder: recorder})
		if err != nil {
			return fmt.Errorf("leader lock: %w", err)
		}
		le, err = leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			ReleaseOnCancel: true, Name: cfg.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { klog.InfoS("leading", "identity", cfg.Identity); ctl.ResyncAll() },
				OnStoppedLeading: func() { klog.InfoS("no longer leading", "identity", cfg.Identity) },
				OnNewLeader:      func(id string) { klog.InfoS("leader", "identity", id) },
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		cfg.Controller.Leader = func() (bool, string) { return le.IsLeader(), le.GetLeader() }
	}
	ctl = NewController(Clients{Kube: kube, Scales: scales, Mapper: mapper, Custom: custom, External: ext, Recorder: recorder}, cfg.Controller)

	var pool *x509.CertPool
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client CA %s: no certificate", cfg.ClientCAFile)
		}
	}
	hook, err := NewWebhook(WebhookOptions{Waker: ctl, Token: cfg.Token, ClientCAs: pool})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.Handle("/", hook)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
	}
	errc := make(chan error, 3)
	go func() {
		var err error
		if cfg.TLSCertFile != "" {
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ClientCAs: pool}
			if pool != nil {
				srv.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
			}
			err = srv.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("push endpoint: %w", err)
		}
	}()
	go func() { errc <- ctl.Run(ctx) }()
	if le != nil {
		go le.Run(ctx)
	}
	if cfg.Ready != nil {
		go func() {
			if ctl.WaitSynced(ctx) {
				close(cfg.Ready)
			}
		}()
	}
	klog.InfoS("promql-wake running", "listen", ln.Addr().String(), "identity", cfg.Identity, "leaderElection", cfg.LeaderElection)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return err
}

// ResyncAll queues every HPA, e.g. when this replica becomes the leader.
func (ctl *Controller) ResyncAll() {
	if ctl == nil {
		return
	}
	hpas, err := ctl.lister.List(labels.Everything())
	if err != nil {
		return
	}
	for _, h := range hpas {
		ctl.queue.Add(types.NamespacedName{Namespace: h.Namespace, Name: h.Name})
	}
}

// WaitSynced waits for the HPA cache.
func (ctl *Controller) WaitSynced(ctx context.Context) bool {
	for !ctl.synced() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// ReadToken reads a bearer token file, trimming whitespace.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return t, nil
}
