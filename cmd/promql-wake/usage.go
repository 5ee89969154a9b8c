package main

import (
	"flag"
	"io"

	"github.com/spf13/pflag"

	"github.com/promql-adapter/promql-adapter/cmd/internal/help"
)

const intro = `promql-wake scales opted-in HPA targets to zero when they are idle and wakes them when demand appears,
then hands back to the HPA. It acts through the leader of its replicas.

Usage:
  promql-wake [flags]
  promql-wake --version`

// groups are promql-wake's own flags; the logging flags follow.
var groups = []help.Group{
	{Title: "Kubernetes", Names: []string{"kubeconfig", "kube-api-qps", "kube-api-burst"}},
	{Title: "Leader election", Names: []string{"leader-elect", "id", "lease-namespace", "lease-name", "leader-elect-lease-duration", "leader-elect-renew-deadline", "leader-elect-retry-period"}},
	{Title: "Push endpoint (/alertmanager, /wake/...) and /metrics, /healthz", Names: []string{"listen", "tls-cert-file", "tls-private-key-file", "client-ca-file", "token-file"}},
	{Title: "Controller", Names: []string{"poll-sleeping", "poll-awake", "workers", "metrics-read-timeout"}},
}

// usage writes the grouped help for the flags of gofs (flag.CommandLine in main); logging names the logging flags.
func usage(w io.Writer, gofs *flag.FlagSet, logging []string) {
	fs := pflag.NewFlagSet("promql-wake", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.AddGoFlagSet(gofs)
	help.Usage{Intro: intro, Groups: groups, Rest: "Other flags", RestSplit: &help.Group{Title: "Logging flags", Names: logging}}.Write(w, fs)
}
