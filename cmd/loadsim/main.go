// Command loadsim simulates Node.js-like Deployments whose event-loop utilisation follows a request load, for end-to-end tests and demos.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

// startTimeout bounds the API server check and the initial sync of the pod informers.
const startTimeout = time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadsim:", err)
		stop()
		os.Exit(1)
	}
}

// run parses args, connects to Kubernetes, and serves until ctx is done.
func run(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("loadsim", pflag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	listen := fs.String("listen", "127.0.0.1:0", "address for /metrics and the control API")
	targetArgs := fs.StringArray("target", nil, "simulated Deployment namespace/deployment/service/capacity/selector, e.g. default/web/web/100/app=web (repeatable)")
	loadArgs := fs.StringArray("load", nil, "initial load namespace/deployment=rps (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(*targetArgs) == 0 {
		return errors.New("at least one --target is required")
	}

	var targets []loadsim.Target
	var namespaces []string
	index := map[string]int{}
	for _, a := range *targetArgs {
		t, err := loadsim.ParseTarget(a)
		if err != nil {
			return fmt.Errorf("--target: %w", err)
		}
		index[t.Namespace+"/"+t.Deployment] = len(targets)
		targets = append(targets, t)
		namespaces = append(namespaces, t.Namespace)
	}
	for _, a := range *loadArgs {
		ns, dep, rps, err := loadsim.ParseLoad(a)
		if err != nil {
			return fmt.Errorf("--load: %w", err)
		}
		i, ok := index[ns+"/"+dep]
		if !ok {
			return fmt.Errorf("--load %q: no --target %s/%s", a, ns, dep)
		}
		targets[i].Load = rps
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create Kubernetes client: %w", err)
	}
	vctx, vcancel := context.WithTimeout(ctx, startTimeout)
	err = client.CoreV1().RESTClient().Get().AbsPath("/version").Do(vctx).Error()
	vcancel()
	if err != nil {
		return fmt.Errorf("reach Kubernetes API server %s: %w", cfg.Host, err)
	}
	// The informers live as long as ictx; the timer bounds only their initial sync.
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	timer := time.AfterFunc(startTimeout, icancel)
	pods, err := loadsim.NewInformerPods(ictx, client, namespaces)
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	defer pods.Stop()
	if !timer.Stop() {
		return fmt.Errorf("watch pods: caches not synced within %s", startTimeout)
	}

	sim, err := loadsim.New(loadsim.Options{Targets: targets, Pods: pods})
	if err != nil {
		return fmt.Errorf("create simulator: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		sim.Run(gctx)
		return nil
	})
	g.Go(func() error { return sim.Serve(gctx, ln) })
	if err := g.Wait(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
