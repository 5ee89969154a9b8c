package main

import (
	"github.com/promql-adapter/promql-adapter/cmd/internal/help"
)

const intro = `promql-activator sits in front of the Services of scale-to-zero targets: it forwards each request to a
Ready endpoint, and holds requests while a target at zero wakes (the first one wakes it).

Usage:
  promql-activator [flags]
  promql-activator help          this text
  promql-activator --version`

// cli is promql-activator's help: its own flags by group; the other flags, then the logging flags, follow.
var cli = help.Usage{Name: "promql-activator", Intro: intro, Groups: []help.Group{
	{Title: "Proxy", Names: []string{"listen", "trusted-proxy-cidrs", "host-ownership-file"}},
	{Title: "Holding requests while a target wakes", Names: []string{"max-held", "max-held-bytes", "max-held-bytes-total", "max-wait", "body-read-timeout", "retry-after"}},
	{Title: "Kubernetes", Names: []string{"kubeconfig", "kube-api-qps", "kube-api-burst"}},
	{Title: "Admin endpoint and shutdown", Names: []string{"admin-listen", "shutdown-delay"}},
}}
