package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// TestImageCABundleChroot uses the image's CA bundle for real: the host image's layer extracted to
// a directory, its promql-adapter run there under chroot as the image runs it (its user and
// environment), so the only CA certificates it can read are the layer's /etc/ssl/certs; `check`
// against a real Prometheus serving HTTPS with a certificate from a test CA, with no CA file given.
// With Debian's bundle alone the query fails with x509's unknown authority; with the test CA
// appended to the layer's bundle it reaches Prometheus and the rule serves. A ca_file in the client
// config (what --prometheus-ca-file sets) works with Debian's bundle, and is then the only CA
// trusted for Prometheus.
func TestImageCABundleChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("chroot needs root (make test runs as root)")
	}
	b, _ := hostBuild(t)
	root := filepath.Join(t.TempDir(), "root")
	cf := extractLayer(t, filepath.Join(b.Out, "oci"), root)

	dir := t.TempDir()
	tlsFiles, err := localcluster.NewLoopbackTLS(filepath.Join(dir, "tls"), "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const user, password = "adapter", "image-ca"
	prom, err := promrun.Start(ctx, promrun.Options{WorkDir: filepath.Join(dir, "prometheus"),
		Web: &promrun.Web{CertFile: tlsFiles.CertFile, KeyFile: tlsFiles.KeyFile, CAFile: tlsFiles.CAFile, User: user, Password: password}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	if !strings.HasPrefix(prom.URL(), "https://127.0.0.1:") {
		t.Fatalf("prometheus at %s, want https on 127.0.0.1", prom.URL())
	}

	other, err := localcluster.NewLoopbackTLS(filepath.Join(dir, "other"), "other")
	if err != nil {
		t.Fatal(err)
	}

	// The rule, the client configs and CA files live in the layer's /tmp: the chroot sees nothing
	// else. Each client config holds Prometheus's basic auth; only the ca_file ones name a CA.
	testCA, err := os.ReadFile(tlsFiles.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := os.ReadFile(other.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	auth := fmt.Sprintf("basic_auth: {username: %s, password: %s}\n", user, password)
	for name, content := range map[string]string{
		"rules.yaml":        "metrics:\n- name: image_ca_probe\n  resource: external\n  query: vector(1)\n",
		"system-roots.yaml": auth,
		"test-ca.yaml":      auth + "tls_config: {ca_file: /tmp/test-ca.crt}\n",
		"other-ca.yaml":     auth + "tls_config: {ca_file: /tmp/other-ca.crt}\n",
		"test-ca.crt":       string(testCA),
		"other-ca.crt":      string(otherCA),
	} {
		if err := os.WriteFile(filepath.Join(root, "tmp", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, clientConfig string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		args := append([]string{"--userspec=" + cf.Config.User, root}, cf.Config.Entrypoint...)
		args = append(args, "check", "--config=/tmp/rules.yaml", "--prometheus-client-config=/tmp/"+clientConfig, "--prometheus-url="+prom.URL())
		cmd := exec.CommandContext(ctx, "chroot", args...)
		cmd.Env = cf.Config.Env // the image's environment only: no SSL_CERT_FILE or SSL_CERT_DIR from ours
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		t.Logf("chroot %s\n%s", strings.Join(args, " "), out)
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("chroot: %v", err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	const unknown = "x509: certificate signed by unknown authority"
	served := func(t *testing.T, out string, code int) {
		if code != 0 || !strings.Contains(out, "image_ca_probe") || !strings.Contains(out, "{}=1") {
			t.Errorf("check exited %d; want 0 with image_ca_probe's sample {}=1", code)
		}
	}
	refused := func(t *testing.T, out string, code int) {
		if code != 1 || !strings.Contains(out, unknown) {
			t.Errorf("check exited %d; want 1 (the rule broken) with %q", code, unknown)
		}
	}
	addToBundle := func(t *testing.T) {
		f, err := os.OpenFile(filepath.Join(root, BundlePath), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(testCA); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// In order: the bundle is Debian's for the first two steps, Debian's and the test CA after.
	for _, step := range []struct {
		name, clientConfig string
		before             func(*testing.T)
		want               func(*testing.T, string, int)
	}{
		{"Debian's bundle: unknown authority", "system-roots.yaml", nil, refused},
		{"Debian's bundle, ca_file the test CA: served", "test-ca.yaml", nil, served},
		{"test CA added to the layer's bundle: served", "system-roots.yaml", addToBundle, served},
		{"test CA in the bundle, ca_file another CA: that CA alone, unknown authority", "other-ca.yaml", nil, refused},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.before != nil {
				step.before(t)
			}
			out, code := check(t, step.clientConfig)
			step.want(t, out, code)
		})
	}
}

// extractLayer writes the one layer of the layout's image for this machine's architecture into
// root (modes as in the layer) and returns that image's config.
func extractLayer(t *testing.T, oci, root string) *v1.ConfigFile {
	t.Helper()
	img := hostImageIn(t, oci)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v (%d)", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return cf
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(path, data, 0o600)
			}
		default:
			t.Fatalf("%s: unexpected tar type %c", h.Name, h.Typeflag)
		}
		if err == nil {
			err = os.Chmod(path, h.FileInfo().Mode()&(os.ModePerm|os.ModeSticky))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// hostImageIn is the layout's image for this machine's architecture.
func hostImageIn(t *testing.T, oci string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(oci)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.Architecture == runtime.GOARCH {
			if img, err = idx.Image(m.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if img == nil {
		t.Fatalf("%s has no linux/%s image", oci, runtime.GOARCH)
	}
	return img
}
