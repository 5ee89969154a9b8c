package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/internal/podnet"
	"github.com/promql-adapter/promql-adapter/internal/podproc"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

// webHost is the Host the activator routes to Service web.
const webHost = "web.demo.example"

// activatorDemo is the demo's promql-activator (in-process) in front of web, whose pods run
// hack/nodeapp on their own IPs in a podnet namespace.
type activatorDemo struct {
	URL string
	sup *podproc.Supervisor
}

// startActivatorDemo runs a Node.js process for every web pod and the activator on a loopback port.
func startActivatorDemo(ctx context.Context, st *stack.Stack, pnet *podnet.Net, root, logDir string) (*activatorDemo, error) {
	appDir := filepath.Join(root, "hack/nodeapp")
	if err := podproc.NpmCI(ctx, appDir); err != nil {
		return nil, err
	}
	sup, err := podproc.Start(ctx, st.Kube, podproc.Options{
		Namespace: ns, Selector: labels.SelectorFromSet(labels.Set{"app": "web"}),
		Command: podproc.NodeApp(pnet, appDir, 8080, 0, 0), LogDir: logDir,
	})
	if err != nil {
		return nil, err
	}
	cfg := st.Cluster.AdminConfig()
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		sup.Stop()
		return nil, err
	}
	cached := memory.NewMemCacheClient(disc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	scales, err := scale.NewForConfig(cfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		sup.Stop()
		return nil, err
	}
	cl := activator.NewCluster(st.Kube, 10*time.Minute)
	if err := cl.Run(ctx); err != nil {
		sup.Stop()
		return nil, err
	}
	waker := &activator.ScaleWaker{Kube: st.Kube, Scales: scales, Mapper: mapper, HPA: cl.HPA}
	h := activator.NewHandler(ctx, cl, waker, activator.NewMetrics(prometheus.NewRegistry()), activator.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sup.Stop()
		return nil, err
	}
	srv := activator.NewServer(h)
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return &activatorDemo{URL: "http://" + ln.Addr().String(), sup: sup}, nil
}

// Stop ends the pods' processes.
func (a *activatorDemo) Stop() { a.sup.Stop() }

// curlCommand is the curl the demo runs, and tells the reader to run.
func (a *activatorDemo) curlCommand() []string {
	return []string{"curl", "-sS", "-H", "Host: " + webHost, "-w", `%{http_code} in %{time_total}s\n`, a.URL + "/"}
}

// curl runs curl against the sleeping web through the activator and shows its answer and time;
// it returns what went wrong ("" when web answered).
func (a *activatorDemo) curl(ctx context.Context) string {
	args := a.curlCommand()
	say("  $ curl -sS -H 'Host: %s' -w '%%{http_code} in %%{time_total}s\\n' %s/", webHost, a.URL)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	took := time.Since(start)
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		say("  %s", l)
	}
	if err != nil || !strings.HasPrefix(string(out), "hello from web-") || !strings.Contains(string(out), "\n200 in ") {
		return fmt.Sprintf("expected: the activator held the curl while web woke and web answered it; got %v after %s: %q", err, took.Round(time.Millisecond), out)
	}
	say("  web was asleep; the activator held the request, woke web at once and forwarded it when its pod answered (%s)", took.Round(time.Millisecond))
	return ""
}
