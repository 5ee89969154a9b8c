package main

import (
	"github.com/promql-adapter/promql-adapter/cmd/internal/help"
)

const intro = `promql-wake scales opted-in HPA targets to zero when they are idle and wakes them when demand appears,
then hands back to the HPA. It acts through the leader of its replicas.

Usage:
  promql-wake [flags]
  promql-wake help          this text
  promql-wake --version`

// cli is promql-wake's help: its own flags by group; the other flags, then the logging flags, follow.
var cli = help.Usage{Name: "promql-wake", Intro: intro, Groups: []help.Group{
	{Title: "Kubernetes", Names: []string{"kubeconfig", "kube-api-qps", "kube-api-burst"}},
	{Title: "Leader election", Names: []string{"leader-elect", "id", "lease-namespace", "lease-name", "leader-elect-lease-duration", "leader-elect-renew-deadline", "leader-elect-retry-period", "leader-pod-label"}},
	{Title: "Push endpoint (/alertmanager, /wake/...) and /metrics, /healthz, /readyz", Names: []string{"listen", "tls-cert-file", "tls-private-key-file", "client-ca-file", "token-file"}},
	{Title: "Controller", Names: []string{"poll-sleeping", "poll-awake", "workers", "metrics-read-timeout"}},
}}
