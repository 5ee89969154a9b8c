// Command promql-adapter serves custom.metrics.k8s.io and external.metrics.k8s.io from PromQL rules.
//
//	promql-adapter [flags]                 serve
//	promql-adapter check --config F ...    every rule against Prometheus: metrics, objects, samples, or why not
//	promql-adapter explain --config F PATH the PromQL one API path runs
//	promql-adapter convert --config F      a prometheus-adapter config in the native format
//	promql-adapter help [COMMAND]          this, grouped; --version prints the build
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	opts, code, done := parse(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if done {
		stop()
		os.Exit(code)
	}
	defer stop()
	if err := server.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "promql-adapter stopped")
		klog.Flush()
		stop()
		os.Exit(1)
	}
}
