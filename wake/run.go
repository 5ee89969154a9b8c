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
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	custommetrics "k8s.io/metrics/pkg/client/custom_metrics"
	externalmetrics "k8s.io/metrics/pkg/client/external_metrics"
)

// Config is everything the controller binary needs.
type Config struct {
	Kube           *rest.Config
	QPS            float32 // kube-apiserver client rate; 0 sizes it to the number of opted-in HPAs (see clientRate)
	Burst          int     // 0: twice the rate
	Identity       string  // this replica's name in the Lease
	LeaseNamespace string
	LeaseName      string
	LeaderElection bool
	// LeaderPodLabel, if set, is a label key the leader sets (value "true") on its own pod, the pod named
	// Identity in LeaseNamespace, and removes when its term ends; it also takes it from the pods of
	// replicas it saw lead before it. A Service selecting the label sends pushes to the leader alone,
	// so every healthy replica is Ready. Empty: only the leader is Ready.
	LeaderPodLabel string
	Election       ElectionTiming // zero: client-go's usual 15s/10s/2s
	Listen         string         // push endpoint and /metrics, e.g. :8443
	Listener       net.Listener
	TLSCertFile    string // serve HTTPS when set; reloaded on change like the two below
	TLSKeyFile     string
	ClientCAFile   string // client certificates signed by it authenticate pushes
	TokenFile      string // file holding the bearer token that authenticates pushes
	Token          string // a fixed bearer token, when there is no TokenFile
	Controller     ControllerOptions
	Registry       *prometheus.Registry
	// Ready, if set, is closed once the controller serves and its caches are synced.
	Ready chan<- struct{}
}

// Server timeouts of the push endpoint: a slow or idle client cannot hold a connection for long.
const (
	serveReadHeaderTimeout = 10 * time.Second
	serveReadTimeout       = 30 * time.Second
	serveWriteTimeout      = 60 * time.Second
	serveIdleTimeout       = 90 * time.Second
	serveMaxHeaderBytes    = 64 << 10
	pushTimeout            = 30 * time.Second // a push's API calls end by then
	apiTimeout             = 30 * time.Second // scale reads and writes, discovery
)

// Run starts the controller, the leader election and the push endpoint, until ctx ends. On the way out it
// stops acting, releases the Lease (so a standby leads at once) and only then returns.
func Run(ctx context.Context, cfg Config) error {
	files := &ServingFiles{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, ClientCAFile: cfg.ClientCAFile, TokenFile: cfg.TokenFile}
	if err := files.Load(); err != nil {
		return err
	}
	creds := files.Credentials
	if cfg.TokenFile == "" {
		creds = func() (string, *x509.CertPool) { _, pool := files.Credentials(); return cfg.Token, pool }
	}
	rate := newClientRate(cfg.QPS, cfg.Burst, cfg.Controller.PollSleeping)
	cfg.Kube = rest.CopyConfig(cfg.Kube)
	cfg.Kube.QPS, cfg.Kube.Burst, cfg.Kube.RateLimiter = 0, 0, rate
	kube, err := kubernetes.NewForConfig(cfg.Kube) // informers watch through it: no overall request timeout
	if err != nil {
		return err
	}
	bounded := rest.CopyConfig(cfg.Kube)
	bounded.Timeout = apiTimeout
	dc, err := discovery.NewDiscoveryClientForConfig(bounded)
	if err != nil {
		return err
	}
	cached := memory.NewMemCacheClient(dc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	scales, err := scale.NewForConfig(bounded, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		return fmt.Errorf("scale client: %w", err)
	}
	reads := rest.CopyConfig(cfg.Kube)
	reads.Timeout = cfg.Controller.ReadTimeout
	if reads.Timeout <= 0 {
		reads.Timeout = 5 * time.Second
	}
	ext, err := externalmetrics.NewForConfig(reads)
	if err != nil {
		return fmt.Errorf("external metrics client: %w", err)
	}
	custom := custommetrics.NewForConfig(reads, mapper, custommetrics.NewAvailableAPIsGetter(dc))

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "promql-wake"})

	reg := cfg.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	if cfg.Controller.Metrics == nil {
		cfg.Controller.Metrics = NewMetrics(reg)
	}
	leadership := AlwaysLeading(ctx)
	if cfg.LeaderElection {
		leadership = NewLeadership()
	}
	cfg.Controller.Leadership = leadership
	var labeler *podLabeler
	if cfg.LeaderPodLabel != "" {
		if err := ValidateLeaderPodLabel(cfg.LeaderPodLabel); err != nil {
			return err
		}
		if cfg.Identity == "" || cfg.LeaseNamespace == "" {
			return errors.New("--leader-pod-label needs the pod's name (--id) and namespace (--lease-namespace)")
		}
		labeler = newPodLabeler(kube.CoreV1().Pods(cfg.LeaseNamespace), cfg.LeaderPodLabel, cfg.Identity, cfg.Election.withDefaults().RetryPeriod)
	}
	cfg.Controller.OnTargets = rate.resize
	ctl := NewController(Clients{Kube: kube, Scales: scales, Mapper: mapper, Custom: custom, External: ext, Recorder: recorder}, cfg.Controller)

	hook, err := NewWebhook(WebhookOptions{Waker: ctl, Credentials: creds})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Live while the election runs: it campaigns again after every lost term, and ends only on shutdown.
		if err := leadership.Ended(); err != nil && ctx.Err() == nil {
			http.Error(w, "leader election ended: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Without the leader label, Ready only where pushes are taken: on the leader, once its HPA cache has
		// synced. With it, the push Service selects the label: every replica is Ready once synced, a standby
		// once its pod is known not to carry the label.
		w.Header().Set("Connection", "close")
		term, leader := leadership.Leading()
		if labeler == nil && term == nil {
			http.Error(w, fmt.Sprintf("not the leader (leader: %q)", leader), http.StatusServiceUnavailable)
			return
		}
		if labeler != nil && term == nil && !labeler.clear() {
			http.Error(w, fmt.Sprintf("standby whose pod may still carry the leader label %s (leader: %q)", cfg.LeaderPodLabel, leader), http.StatusServiceUnavailable)
			return
		}
		if !ctl.synced() {
			http.Error(w, "HPA cache not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), pushTimeout)
		defer cancel()
		hook.ServeHTTP(w, r.WithContext(rctx))
	}))
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: serveReadHeaderTimeout, ReadTimeout: serveReadTimeout,
		WriteTimeout: serveWriteTimeout, IdleTimeout: serveIdleTimeout, MaxHeaderBytes: serveMaxHeaderBytes,
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
	}
	addr := ln.Addr().String()
	if cfg.TLSCertFile != "" {
		ln = tls.NewListener(ln, files.TLSConfig())
	}
	errc := make(chan error, 3)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("push endpoint: %w", err)
		}
	}()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		if err := ctl.Run(runCtx); err != nil {
			errc <- err
		}
	}()
	elected := make(chan struct{})
	if cfg.LeaderElection {
		lock, err := resourcelock.New(resourcelock.LeasesResourceLock, cfg.LeaseNamespace, cfg.LeaseName,
			kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: cfg.Identity, EventRecorder: recorder})
		if err != nil {
			return fmt.Errorf("leader lock: %w", err)
		}
		go func() {
			defer close(elected)
			if err := Elect(runCtx, lock, cfg.Election, leadership, ctl.ResyncAll); err != nil {
				errc <- err
			}
		}()
	} else {
		close(elected)
	}
	labelled := make(chan struct{})
	if labeler != nil {
		go func() { defer close(labelled); labeler.run(runCtx, leadership) }()
	} else {
		close(labelled)
	}
	if cfg.Ready != nil {
		go func() {
			if ctl.WaitSynced(runCtx) {
				close(cfg.Ready)
			}
		}()
	}
	klog.InfoS("promql-wake running", "listen", addr, "identity", cfg.Identity, "leaderElection", cfg.LeaderElection, "leaderPodLabel", cfg.LeaderPodLabel)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Stop acting, then release the Lease (Elect returns once it has tried) and take the leader label from
	// this pod, then stop serving.
	stopRun()
	<-ctlDone
	<-elected
	<-labelled
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
