// Command promql-wake scales opted-in HPA targets to zero when idle and wakes them on demand.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags"
	"github.com/promql-adapter/promql-adapter/version"
	"github.com/promql-adapter/promql-adapter/wake"
)

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", "", "kubeconfig; in-cluster config if empty")
		identity   = flag.String("id", os.Getenv("POD_NAME"), "this replica's identity in the leader Lease (default $POD_NAME, else the host name)")
		leaseNS    = flag.String("lease-namespace", "custom-metrics", "namespace of the leader Lease")
		leaseName  = flag.String("lease-name", "promql-wake", "name of the leader Lease")
		elect      = flag.Bool("leader-elect", true, "elect one acting replica through a Lease; off only for a single replica")
		listen     = flag.String("listen", ":8443", "address of the push endpoint (/alertmanager, /wake/...) and /metrics, /healthz")
		certFile   = flag.String("tls-cert-file", "", "serve HTTPS with this certificate (reloaded when the file changes)")
		keyFile    = flag.String("tls-private-key-file", "", "key of --tls-cert-file")
		clientCA   = flag.String("client-ca-file", "", "client certificates signed by this CA may push (reloaded when the file changes)")
		tokenFile  = flag.String("token-file", "", "file holding the bearer token pushes must carry (reloaded when the file changes)")
		pollSleep  = flag.Duration("poll-sleeping", 500*time.Millisecond, "how often a sleeping target's activation signals are read")
		pollAwake  = flag.Duration("poll-awake", 5*time.Second, "how often an awake target is checked for idleness")
		qps        = flag.Float64("kube-api-qps", 0, "kube-apiserver client rate limit; 0 sizes it to the opted-in HPAs (50, plus 3 requests per --poll-sleeping per HPA)")
		burst      = flag.Int("kube-api-burst", 0, "kube-apiserver client burst; 0 is twice the rate")
		workers    = flag.Int("workers", 4, "HPAs decided at once")
		readTO     = flag.Duration("metrics-read-timeout", 5*time.Second, "timeout of each activation signal read through the metrics APIs")
		leaseDur   = flag.Duration("leader-elect-lease-duration", 15*time.Second, "how long a standby waits before taking over an unrenewed Lease")
		renewDL    = flag.Duration("leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before it stops acting")
		retryPer   = flag.Duration("leader-elect-retry-period", 2*time.Second, "between leader election tries")
		podLabel   = flag.String("leader-pod-label", "", "the leader sets this label (value \"true\") on its own pod, the pod named --id in --lease-namespace, and removes it when it stops leading, so a Service selecting it sends pushes to the leader alone and every replica is Ready (the chart: "+wake.DefaultLeaderPodLabel+"); empty: only the leader is Ready")
	)
	showVersion := flag.Bool("version", false, "print the version, commit and Go version, then exit")
	logging := logflags.AddGo(flag.CommandLine)
	if code, done := cli.ParseGo(flag.CommandLine, logging.Names(), os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	if *showVersion {
		fmt.Println(version.Get().String("promql-wake"))
		return
	}
	if err := logging.Apply(); err != nil {
		fmt.Fprintf(os.Stderr, "promql-wake: %v\n", err)
		os.Exit(2)
	}
	klog.InfoS("starting", "version", version.Get().Version, "commit", version.Get().Commit, "go", version.Get().GoVersion)

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		klog.ErrorS(err, "kubeconfig")
		os.Exit(1)
	}
	if *identity == "" {
		*identity, _ = os.Hostname()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = wake.Run(ctx, wake.Config{
		Kube: cfg, QPS: float32(*qps), Burst: *burst, Identity: *identity, LeaseNamespace: *leaseNS, LeaseName: *leaseName, LeaderElection: *elect, LeaderPodLabel: *podLabel,
		Election: wake.ElectionTiming{LeaseDuration: *leaseDur, RenewDeadline: *renewDL, RetryPeriod: *retryPer},
		Listen:   *listen, TLSCertFile: *certFile, TLSKeyFile: *keyFile, ClientCAFile: *clientCA, TokenFile: *tokenFile,
		Controller: wake.ControllerOptions{PollSleeping: *pollSleep, PollAwake: *pollAwake, Workers: *workers, ReadTimeout: *readTO},
	})
	if err != nil {
		klog.ErrorS(err, "promql-wake stopped")
		klog.Flush()
		os.Exit(1)
	}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, nil).ClientConfig()
}
