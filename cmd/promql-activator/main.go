// Command promql-activator holds HTTP requests for scale-to-zero targets while they wake, and forwards them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags"
	"github.com/promql-adapter/promql-adapter/version"
)

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", "", "kubeconfig; in-cluster config if empty")
		listen     = flag.String("listen", ":8080", "address of the proxy (HTTP/1.1 and h2c)")
		admin      = flag.String("admin-listen", ":9090", "address of /metrics, /healthz and /readyz")
		maxHeld    = flag.Int("max-held", 100, "requests held per target while it wakes; more get 503 at once")
		maxBytes   = flag.Int64("max-held-bytes", 8<<20, "bytes of request bodies held per target; a body that does not fit gets 503 at once")
		maxTotal   = flag.Int64("max-held-bytes-total", 64<<20, "bytes of request bodies held over all targets; a body that does not fit gets 503 at once")
		maxWait    = flag.Duration("max-wait", 60*time.Second, "how long a request is held at most; then 503 with Retry-After")
		bodyRead   = flag.Duration("body-read-timeout", 0, "how long a held request's body may take to arrive, then 503 with Retry-After (0: max-wait; at most max-wait)")
		shutDelay  = flag.Duration("shutdown-delay", 5*time.Second, "on SIGTERM, /readyz fails at once and the proxy keeps serving this long before it drains, while clients move to other replicas")
		retryAfter = flag.Duration("retry-after", 5*time.Second, "the Retry-After of a 503")
		qps        = flag.Float64("kube-api-qps", 20, "kube-apiserver client rate limit")
		burst      = flag.Int("kube-api-burst", 40, "kube-apiserver client burst")
		showVer    = flag.Bool("version", false, "print the version, commit and Go version, then exit")
		ownFile    = flag.String("host-ownership-file", "", "YAML or JSON map of namespace to the host suffixes it may route (e.g. a mounted ConfigMap), re-read every 10s; empty: any namespace may claim a host no other namespace holds, the oldest claim wins")
		trusted    = flag.String("trusted-proxy-cidrs", "", "\",\"-separated CIDRs of proxies (the ingress controller) whose X-Forwarded-For/-Host/-Proto are kept; from any other client they are replaced")
	)
	logging := logflags.AddGo(flag.CommandLine)
	if code, done := cli.ParseGo(flag.CommandLine, logging.Names(), os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	if *showVer {
		fmt.Println(version.Get().String("promql-activator"))
		return
	}
	if err := logging.Apply(); err != nil {
		fmt.Fprintf(os.Stderr, "promql-activator: %v\n", err)
		os.Exit(2)
	}
	klog.InfoS("starting", "version", version.Get().Version, "commit", version.Get().Commit, "go", version.Get().GoVersion)
	proxies, err := activator.ParseCIDRs(*trusted)
	if err != nil {
		klog.ErrorS(err, "--trusted-proxy-cidrs")
		os.Exit(2)
	}
	if err := run(*kubeconfig, *listen, *admin, float32(*qps), *burst, *ownFile, *shutDelay, activator.Options{
		MaxHeld: *maxHeld, MaxHeldBytes: *maxBytes, MaxHeldBytesTotal: *maxTotal, MaxWait: *maxWait, BodyReadTimeout: *bodyRead,
		RetryAfter: *retryAfter, TrustedProxies: proxies,
	}); err != nil {
		klog.ErrorS(err, "promql-activator")
		os.Exit(1)
	}
}

func run(kubeconfig, listen, adminListen string, qps float32, burst int, ownFile string, shutdownDelay time.Duration, o activator.Options) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst, cfg.Timeout = qps, burst, 30*time.Second
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	cached := memory.NewMemCacheClient(disc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	scales, err := scale.NewForConfig(cfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The informers, wake loops and wakes outlive the drain: held requests are
	// forwarded when their target wakes, also after SIGTERM.
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	cluster := activator.NewCluster(kube, 10*time.Minute)
	broadcaster := record.NewBroadcaster(record.WithContext(runCtx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	cluster.Events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "promql-activator"})
	if ownFile != "" {
		data, err := os.ReadFile(ownFile)
		if err != nil {
			return fmt.Errorf("--host-ownership-file: %w", err)
		}
		own, err := activator.ParseOwnership(data)
		if err != nil {
			return fmt.Errorf("--host-ownership-file %s: %w", ownFile, err)
		}
		cluster.SetOwnership(own)
		go activator.WatchOwnership(runCtx, ownFile, data, 10*time.Second, cluster.SetOwnership)
		klog.InfoS("host ownership map in force", "path", ownFile, "namespaces", len(own))
	}
	if err := cluster.Run(runCtx); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	waker := &activator.ScaleWaker{Kube: kube, Scales: scales, Mapper: mapper, HPA: cluster.HPA}
	h := activator.NewHandler(runCtx, cluster, waker, activator.NewMetrics(reg), o)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	mux.HandleFunc("/healthz", ok)
	var draining atomic.Bool
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { // caches synced before we listen
		if draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		ok(w, r)
	})
	adminSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	proxySrv := activator.NewServer(h)

	pl, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	al, err := net.Listen("tcp", adminListen)
	if err != nil {
		return err
	}
	klog.InfoS("serving", "proxy", pl.Addr(), "admin", al.Addr())
	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()
	go func() { errc <- adminSrv.Serve(al) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	stop() // a second signal ends the process at once
	// Drain: not Ready at once, so that Service endpoints move away, while the
	// proxy still serves what is sent to it meanwhile; then no new connection,
	// and held and in-flight requests finish (up to max-wait) before we exit.
	draining.Store(true)
	klog.InfoS("shutting down: not ready; serving until the shutdown delay ends, then draining", "shutdownDelay", shutdownDelay, "maxWait", o.MaxWait)
	select {
	case <-time.After(shutdownDelay):
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.MaxWait+5*time.Second)
	defer cancel()
	err = proxySrv.Shutdown(sctx)
	klog.InfoS("proxy drained", "err", err)
	return errors.Join(err, adminSrv.Shutdown(sctx))
}
