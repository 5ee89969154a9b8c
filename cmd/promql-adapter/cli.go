package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/cmd/internal/help"
	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags"
	"github.com/promql-adapter/promql-adapter/inspect"
	"github.com/promql-adapter/promql-adapter/server"
	"github.com/promql-adapter/promql-adapter/version"
)

// subcommands run instead of the server; each answers --help.
var subcommands = []struct {
	name, summary string
	run           func(context.Context, []string, io.Writer, io.Writer) int
}{
	{"check", "run every rule against Prometheus: the metrics it serves, objects, a sample each, or why not", inspect.RunCheck},
	{"explain", "print the PromQL one API path runs, e.g. /apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/pods/*/METRIC; explain hpa NS/NAME: why a live HPA has its replica count", inspect.RunExplain},
	{"convert", "print a prometheus-adapter config in the native rule format, or its chart's values as this chart's", inspect.ConvertWithFlags(serverFlag)},
}

// The adapter's own flags by group; the generic API server flags follow, then logging.
var groups = []help.Group{
	{Title: "Rules", Names: []string{"config", "config-format", "strict", "config-reload-interval", "series-relist-interval", "series-max-age", "discovery-timeout"}},
	{Title: "Prometheus", Names: []string{"prometheus-url", "prometheus-client-config", "prometheus-ca-file", "prometheus-token-file",
		"prometheus-insecure-skip-tls-verify", "prometheus-header", "prometheus-timeout", "prometheus-max-inflight", "prometheus-max-queue", "prometheus-compression"}},
	{Title: "Coalescing (one query for many HPAs)", Names: server.CoalesceFlagNames},
	{Title: "Kubernetes", Names: []string{"lister-kubeconfig", "client-qps", "client-burst", "informer-sync-timeout"}},
	{Title: "Serving", Names: []string{"apis", "trust-loopback", "response-compression", "secure-port", "bind-address", "cert-dir", "tls-cert-file", "tls-private-key-file"}},
	{Title: "APIServices and serving certificate kept by the leader (beside KEDA's chart, GitOps)", Names: server.APIServiceFlagNames},
	{Title: "Forwarding, beside KEDA or another adapter", Names: []string{"forward-external", "forward-custom", "forward-timeout", "forward-refresh-interval"}},
	{Title: "prometheus-adapter's flags, accepted as they are", Names: server.PrometheusAdapterFlagNames},
}

const intro = `promql-adapter serves the Kubernetes custom and external metrics APIs (the HPA's and KEDA's) from PromQL rules.

Usage:
  promql-adapter --config RULES [flags]     serve
  promql-adapter COMMAND --config RULES ... inspect rules without serving
  promql-adapter help [COMMAND]             this text, or a command's
  promql-adapter --version                  version, commit and Go version`

const footer = `A rule file is native (metrics:, discovery:) or prometheus-adapter's (rules:, externalRules:, resourceRules:).
Run "promql-adapter COMMAND --help" for a command's flags.`

// newFlags is the server's command line: its options and the logging flags.
func newFlags(opts *server.Options) (*pflag.FlagSet, *bool, *logflags.Flags) {
	fs := pflag.NewFlagSet("promql-adapter", pflag.ContinueOnError)
	fs.SortFlags = false
	opts.AddFlags(fs)
	showVersion := fs.Bool("version", false, "print the version, commit and Go version, then exit")
	logging := logflags.Add(fs)
	return fs, showVersion, logging
}

// serverFlag reports whether the server has a flag of that name (convert keeps only those of a values file's extraArguments).
func serverFlag(name string) bool {
	fs, _, _ := newFlags(server.NewOptions())
	return fs.Lookup(name) != nil
}

// usage writes the grouped help text of the server.
func usage(w io.Writer) {
	fs, _, logging := newFlags(server.NewOptions())
	u := help.Usage{Intro: intro, Groups: append(groups, help.Group{Title: "Other", Names: []string{"version"}}),
		Rest:      "Generic API server flags (serving, delegated authentication and authorization, audit)",
		RestSplit: &help.Group{Title: "Logging flags", Names: logging.Names()}, Footer: footer}
	for _, s := range subcommands {
		u.Subcommands = append(u.Subcommands, [2]string{s.name, s.summary})
	}
	u.Write(w, fs)
}

// parse reads the command line. It either returns the server's options, or runs what the
// arguments ask instead (a subcommand, help, --version) and returns done with the exit code.
func parse(ctx context.Context, args []string, stdout, stderr io.Writer) (opts *server.Options, code int, done bool) {
	if len(args) > 0 {
		if args[0] == "help" {
			if len(args) > 1 {
				for _, s := range subcommands {
					if s.name == args[1] {
						return nil, s.run(ctx, []string{"--help"}, stdout, stderr), true
					}
				}
				fmt.Fprintf(stderr, "promql-adapter: unknown command %q; commands: check, explain, convert\n", args[1])
				return nil, 2, true
			}
			usage(stdout)
			return nil, 0, true
		}
		if args[0] == "version" {
			fmt.Fprintln(stdout, version.Get().String("promql-adapter"))
			return nil, 0, true
		}
		for _, s := range subcommands {
			if s.name == args[0] {
				return nil, s.run(ctx, args[1:], stdout, stderr), true
			}
		}
	}
	opts = server.NewOptions()
	fs, showVersion, logging := newFlags(opts)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage(stdout)
			return nil, 0, true
		}
		fmt.Fprintf(stderr, "promql-adapter: %v\nRun \"promql-adapter --help\" for the flags.\n", err)
		return nil, 2, true
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Get().String("promql-adapter"))
		return nil, 0, true
	}
	if err := logging.Apply(); err != nil {
		fmt.Fprintf(stderr, "promql-adapter: %v\n", err)
		return nil, 2, true
	}
	for _, a := range fs.Args() {
		// prometheus-adapter's chart passes its binary's path as the first argument.
		if slices.Contains([]string{"/adapter", "adapter"}, a) {
			klog.InfoS("ignoring prometheus-adapter's binary path in the arguments", "arg", a)
			continue
		}
		fmt.Fprintf(stderr, "promql-adapter: unknown command %q; commands: check, explain, convert (run \"promql-adapter --help\")\n", a)
		return nil, 2, true
	}
	klog.InfoS("starting", "version", version.Get().Version, "commit", version.Get().Commit, "go", version.Get().GoVersion)
	return opts, 0, false
}
