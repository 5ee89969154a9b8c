package release

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is where a release goes: host[:port]/path, e.g. ghcr.io/promql-adapter or 127.0.0.1:5000/team.
type Registry struct {
	Path string // host[:port] and an optional path, no scheme, no trailing slash
	// Insecure allows plain HTTP to a registry that is not on loopback (127.0.0.1, ::1, localhost);
	// loopback registries may always be spoken to over plain HTTP.
	Insecure bool
}

// ImageRepo is the image's repository in the registry: <registry>/promql-adapter.
func (r Registry) ImageRepo() string { return r.Path + "/promql-adapter" }

// ChartRepo is the OCI URL helm push takes: oci://<registry>/charts (the chart lands at .../charts/promql-adapter).
func (r Registry) ChartRepo() string { return "oci://" + r.Path + "/charts" }

// Host is the registry's host[:port].
func (r Registry) Host() string { h, _, _ := strings.Cut(r.Path, "/"); return h }

// PlainHTTP reports whether plain HTTP is allowed: loopback, or Insecure.
func (r Registry) PlainHTTP() bool { return r.Insecure || IsLoopback(r.Host()) }

// Validate checks the registry path: a host, no scheme, a reference go-containerregistry accepts.
func (r Registry) Validate() error {
	if r.Path == "" {
		return fmt.Errorf("registry: empty; want host[:port]/path (REGISTRY=...)")
	}
	if strings.Contains(r.Path, "://") {
		return fmt.Errorf("registry %q: give host[:port]/path without a scheme", r.Path)
	}
	if strings.HasSuffix(r.Path, "/") {
		return fmt.Errorf("registry %q: no trailing slash", r.Path)
	}
	if _, err := name.NewRepository(r.ImageRepo(), name.StrictValidation); err != nil {
		return fmt.Errorf("registry %q: %w", r.Path, err)
	}
	return nil
}

// IsLoopback reports whether host[:port] names the loopback interface.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpGuard refuses plain-HTTP requests to hosts that are not allowed them: go-containerregistry falls
// back to HTTP on its own for loopback and private (RFC 1918) addresses, and a release goes out over
// TLS unless the registry is on loopback or the caller said Insecure.
type httpGuard struct {
	next     http.RoundTripper
	insecure bool
}

func (g httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure && !IsLoopback(req.URL.Host) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: the registry is not on loopback; pass --insecure-registry to allow it", req.URL.Host)
	}
	return g.next.RoundTrip(req)
}

// remoteOptions are the options of every registry call: the context, the Docker keychain
// (~/.docker/config.json, as helm registry login and docker login write it) and the HTTP guard.
func (r Registry) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithTransport(httpGuard{next: remote.DefaultTransport, insecure: r.Insecure}),
	}
}

func (r Registry) nameOptions() []name.Option {
	if r.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// PushIndex pushes the image index of the OCI layout at layoutDir to <registry>/promql-adapter:<tag> with
// remote.WriteIndex and returns the pushed reference by digest.
func PushIndex(ctx context.Context, r Registry, layoutDir, tag string) (name.Digest, error) {
	idx, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		return name.Digest{}, fmt.Errorf("read OCI layout %s: %w", layoutDir, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	ref, err := name.NewTag(r.ImageRepo()+":"+tag, r.nameOptions()...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("image tag: %w", err)
	}
	if err := remote.WriteIndex(ref, idx, r.remoteOptions(ctx)...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.Context().Digest(d.String()), nil
}

// PullIndex fetches an image index from the registry by reference (tag or digest).
func PullIndex(ctx context.Context, r Registry, ref string) (v1.ImageIndex, error) {
	n, err := name.ParseReference(ref, r.nameOptions()...)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Index(n, r.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return idx, nil
}

// PullImage fetches an image (a manifest) from the registry by reference.
func PullImage(ctx context.Context, r Registry, ref string) (v1.Image, error) {
	n, err := name.ParseReference(ref, r.nameOptions()...)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(n, r.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

// PushChart runs `helm push <tgz> oci://<registry>/charts`, with --plain-http where plain HTTP is
// allowed, and returns Helm's output (which names the pushed digest).
func PushChart(ctx context.Context, r Registry, helm, tgz string) (string, error) {
	args := []string{"push", tgz, r.ChartRepo()}
	if r.PlainHTTP() {
		args = append(args, "--plain-http")
	}
	out, err := exec.CommandContext(ctx, helm, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
