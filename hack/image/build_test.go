//go:build install

// The image test is behind the build tag "install" (make image-test), not in make test: it has not yet
// completed once. Its first run, on a 2-core machine shared with five other builds, spent its 60 min
// timeout cross-compiling the amd64 binaries cold (-trimpath, CGO_ENABLED=0 share no cache with the
// usual builds). Remove the tag once it has passed.

package main

import (
	"archive/tar"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestImage builds the image twice from this tree: the same digest both times (reproducible);
// both platforms in the index; each config runs the adapter as 65532 with the OCI labels; the
// amd64 binaries taken out of the layer run and print the version baked in.
func TestImage(t *testing.T) {
	b := Build{Version: "v0.0.0-imagetest", Commit: "0123456789abcdef", Source: "https://example.invalid/promql-adapter",
		Repo: "../..", Created: time.Unix(1767225600, 0).UTC()}
	b.Out = t.TempDir()
	first, err := b.Run()
	if err != nil {
		t.Fatal(err)
	}
	b2 := b
	b2.Out = t.TempDir()
	second, err := b2.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image:\n%s", strings.Join(first, "\n"))
	if !slices.Equal(first[:3], second[:3]) {
		t.Errorf("two builds of the same tree differ:\n%s\n%s", strings.Join(first[:3], "\n"), strings.Join(second[:3], "\n"))
	}
	a1, _ := os.ReadFile(filepath.Join(b.Out, "promql-adapter.oci.tar"))
	a2, _ := os.ReadFile(filepath.Join(b2.Out, "promql-adapter.oci.tar"))
	if len(a1) == 0 || string(a1) != string(a2) {
		t.Errorf("the archives differ (%d and %d bytes)", len(a1), len(a2))
	}

	p, err := layout.FromPath(filepath.Join(b.Out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	// The layout's index.json is the image index itself: one manifest per platform.
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != "application/vnd.oci.image.index.v1+json" || im.Annotations["org.opencontainers.image.version"] != b.Version {
		t.Errorf("index media type %s, annotations %v", im.MediaType, im.Annotations)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/promql-adapter"}) || len(c.Cmd) != 0 ||
			cf.Architecture != m.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("%s config: user %q entrypoint %q cmd %q arch %s", m.Platform.Architecture, c.User, c.Entrypoint, c.Cmd, cf.Architecture)
		}
		for k, v := range map[string]string{
			"org.opencontainers.image.version": b.Version, "org.opencontainers.image.revision": b.Commit,
			"org.opencontainers.image.source": b.Source, "org.opencontainers.image.licenses": "Apache-2.0",
		} {
			if c.Labels[k] != v {
				t.Errorf("%s label %s = %q, want %q", m.Platform.Architecture, k, c.Labels[k], v)
			}
		}
		files := layerFiles(t, img)
		if got := strings.Join(slices.Sorted(maps.Keys(files)), ","); got != "promql-activator,promql-adapter,promql-wake,tmp/" {
			t.Errorf("%s layer holds %s; want the three binaries and /tmp, no shell", m.Platform.Architecture, got)
		}
		if m.Platform.Architecture != runtime.GOARCH {
			continue
		}
		dir := t.TempDir()
		for _, name := range Binaries {
			bin := filepath.Join(dir, name)
			if err := os.WriteFile(bin, files[name], 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "--version").CombinedOutput()
			want := name + " v0.0.0-imagetest (commit 0123456789abcdef, " + runtime.Version() + ", linux/" + runtime.GOARCH + ")"
			if err != nil || strings.TrimSpace(string(out)) != want {
				t.Errorf("%s --version from the %s layer: %v %q, want %q", name, runtime.GOARCH, err, out, want)
			}
		}
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v", platforms)
	}
}

// layerFiles reads the image's one layer: name → content.
func layerFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v (%d)", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(1767225600, 0)) {
			t.Errorf("%s: uid %d gid %d mtime %s", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = data
	}
}
