// Command release builds promql-adapter's release into a directory and, with --push, pushes its image
// index and its chart to an OCI registry (make release-build, make release):
//
//	go run ./hack/release --registry 127.0.0.1:5000/promql --helm $(HELM) [--push] [--out bin/release]
//
// The version comes from `git describe --tags` (see docs/release.md): a clean checkout of tag vX.Y.Z is
// release X.Y.Z; anything else is a pre-release such as 0.0.0-dev.gabc1234 whose notes come from the
// [Unreleased] section of CHANGELOG.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/promql-adapter/promql-adapter/hack/release/release"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		o         release.Options
		version   string
		platforms string
		push      bool
		timeout   time.Duration
	)
	flag.StringVar(&o.Repo, "repo", ".", "the repository root")
	flag.StringVar(&o.Out, "out", "bin/release", "the artifacts' directory (emptied first)")
	flag.StringVar(&o.Registry.Path, "registry", "ghcr.io/promql-adapter", "registry host[:port]/path: the image goes to <registry>/promql-adapter, the chart to oci://<registry>/charts")
	flag.BoolVar(&o.Registry.Insecure, "insecure-registry", false, "allow plain HTTP to a registry that is not on loopback (127.0.0.1, ::1, localhost always may)")
	flag.StringVar(&o.Helm, "helm", os.Getenv("PROMQL_ADAPTER_HELM"), "Helm's binary (default $PROMQL_ADAPTER_HELM)")
	flag.StringVar(&version, "version", "", "the release's semantic version X.Y.Z[-pre] (default from git describe --tags)")
	flag.StringVar(&platforms, "platforms", "", "os/arch list of the image index, comma-separated (default hack/image's: linux/amd64,linux/arm64)")
	flag.BoolVar(&push, "push", false, "push the image index and the chart to --registry after building")
	flag.DurationVar(&timeout, "timeout", 90*time.Minute, "bound of the whole run (a cold arm64 cross-compile is long)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	defer cancelT()

	v, err := release.GitVersion(ctx, o.Repo)
	if err != nil {
		return err
	}
	if version != "" {
		if v, err = release.WithVersion(v, version); err != nil {
			return err
		}
	}
	o.Version = v
	if platforms != "" {
		o.Platforms = strings.Split(platforms, ",")
	}
	o.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "release: "+f+"\n", a...) }
	res, err := release.Build(ctx, o)
	if err != nil {
		return err
	}
	fmt.Printf("version %s (chart %s), image index %s\n", v.Tag(), v.SemVer, res.IndexDigest)
	sums, err := os.ReadFile(res.Sums)
	if err != nil {
		return err
	}
	fmt.Printf("artifacts in %s:\n%s", o.Out, sums)
	if !push {
		return nil
	}
	p, err := release.Push(ctx, o, res)
	if err != nil {
		return err
	}
	fmt.Printf("pushed image %s (tag %s)\npushed chart %s --version %s\n%s", p.Image, v.Tag(), p.ChartRef, v.SemVer, p.HelmPrint)
	return nil
}
