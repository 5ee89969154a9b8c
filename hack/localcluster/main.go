// Command localcluster starts the local control plane of internal/localcluster
// (etcd, kube-apiserver, kube-controller-manager, kwok with node kwok-node-0)
// into a work dir, prints the admin kubeconfig path and runs until SIGINT/SIGTERM.
//
//	PROMQL_ADAPTER_CLUSTER_BIN=$PWD/.cache/cluster/k8s-v1.37.2/bin go run ./hack/localcluster -work-dir .cache/localcluster
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// run parses the flags, starts the cluster and stops it on a signal.
func run() error {
	workDir := flag.String("work-dir", ".cache/localcluster", "directory for etcd data, pki, kubeconfigs and logs (its subdirectories are recreated)")
	binDir := flag.String("bin-dir", "", "control-plane binaries (default $"+localcluster.BinDirEnv+")")
	apiPort := flag.Int("apiserver-port", 0, "kube-apiserver port on 127.0.0.1 (0 = a free port)")
	hpaSync := flag.Duration("hpa-sync-period", localcluster.DefaultHPASyncPeriod, "kube-controller-manager --horizontal-pod-autoscaler-sync-period")
	hpaDown := flag.Duration("hpa-downscale-stabilization", localcluster.DefaultHPADownscaleStabilization, "kube-controller-manager --horizontal-pod-autoscaler-downscale-stabilization")
	verbose := flag.Bool("v", false, "print start-up progress")
	flag.Parse()

	if *binDir == "" {
		d, err := localcluster.BinDirFromEnv()
		if err != nil {
			return err
		}
		*binDir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := localcluster.Options{
		BinDir:                    *binDir,
		WorkDir:                   *workDir,
		HPASyncPeriod:             *hpaSync,
		HPADownscaleStabilization: *hpaDown,
		Ports:                     localcluster.Ports{APIServer: *apiPort},
	}
	if *verbose {
		opts.Logf = log.Printf
	}
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start local cluster: %w", err)
	}
	fmt.Println(c.AdminKubeconfig())
	log.Printf("local cluster ready in %s at %s; logs in %s; export KUBECONFIG=%s; Ctrl-C stops it",
		c.Timings().Total.Round(time.Millisecond), c.APIServerURL(), c.LogDir(), c.AdminKubeconfig())

	<-ctx.Done()
	log.Print("stopping local cluster")
	if err := c.Stop(); err != nil {
		return fmt.Errorf("stop local cluster: %w", err)
	}
	return nil
}
