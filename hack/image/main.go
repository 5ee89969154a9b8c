// Command image builds promql-adapter's container image without a Docker engine or a base image:
// an OCI image index for linux/amd64 and linux/arm64, each image one layer holding the static
// binaries promql-adapter, promql-wake and promql-activator, run as user 65532, and the CA bundle
// /etc/ssl/certs/ca-certificates.crt built from Debian's ca-certificates package at the version and
// sha256 pinned in hack/image/ca-certificates.lock (fetched once with apt-get download into --deb-cache).
// It writes an OCI layout and the same layout as one tar archive:
//
//	go run ./hack/image --out bin/image --version v0.1.0 --commit $(git rev-parse HEAD) --created $(git log -1 --format=%ct)
//
// Two builds of the same commit give the same digest: the binaries are built with -trimpath and
// fixed link flags, and every timestamp in the layers, the configs and the archive is --created.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	var b Build
	var created int64
	flag.StringVar(&b.Out, "out", "bin/image", "output directory: oci/ (the OCI layout) and promql-adapter.oci.tar (the archive)")
	flag.StringVar(&b.Version, "version", "dev", "version baked into the binaries and the org.opencontainers.image.version label")
	flag.StringVar(&b.Commit, "commit", "unknown", "commit baked into the binaries and the org.opencontainers.image.revision label")
	flag.StringVar(&b.Source, "source", "https://github.com/promql-adapter/promql-adapter", "org.opencontainers.image.source label")
	flag.StringVar(&b.Repo, "repo", ".", "the repository root (the Go module)")
	flag.StringVar(&b.CALock, "ca-lock", "", "the CA bundle's lock file: Debian's ca-certificates version and the .deb's sha256 (default <repo>/hack/image/ca-certificates.lock)")
	flag.StringVar(&b.DebCache, "deb-cache", "", "directory keeping the pinned .deb between builds (default <repo>/.cache/debs)")
	flag.Int64Var(&created, "created", 0, "seconds since the epoch stamped on every file and config (the commit's time)")
	platforms := flag.String("platforms", "", "os/arch list of the index, comma-separated (default linux/amd64,linux/arm64)")
	flag.Parse()
	if *platforms != "" {
		for _, s := range strings.Split(*platforms, ",") {
			p, err := v1.ParsePlatform(s)
			if err != nil || p.OS == "" || p.Architecture == "" {
				fmt.Fprintf(os.Stderr, "image: --platforms: %q is not os/arch\n", s)
				os.Exit(2)
			}
			b.Platforms = append(b.Platforms, *p)
		}
	}
	b.Created = time.Unix(created, 0).UTC()
	idx, err := b.Run(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	for _, line := range idx {
		fmt.Println(line)
	}
}
