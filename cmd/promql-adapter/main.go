// Command promql-adapter serves custom.metrics.k8s.io and external.metrics.k8s.io from PromQL rules.
//
//	promql-adapter [flags]                 serve
//	promql-adapter check --config F ...    every rule against Prometheus: metrics, objects, samples, or why not
//	promql-adapter explain --config F PATH the PromQL one API path runs
//	promql-adapter convert --config F      a prometheus-adapter config in the native format
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/inspect"
	"github.com/promql-adapter/promql-adapter/server"
)

func main() {
	if len(os.Args) > 1 {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		switch os.Args[1] {
		case "check":
			code := inspect.RunCheck(ctx, os.Args[2:], os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		case "explain":
			code := inspect.RunExplain(ctx, os.Args[2:], os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		case "convert":
			code := inspect.RunConvert(ctx, os.Args[2:], os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		}
		stop()
	}
	opts := server.NewOptions()
	fs := pflag.NewFlagSet("promql-adapter", pflag.ExitOnError)
	opts.AddFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, opts); err != nil {
		klog.ErrorS(err, "promql-adapter stopped")
		klog.Flush()
		os.Exit(1)
	}
}
