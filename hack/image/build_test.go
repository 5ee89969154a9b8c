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

// TestImageHost is TestImage (make image-test, in make test-peers) for this machine's platform only, to run
// alone while working on the image (no arm64 cross-compile), built twice: the same digest; user 65532,
// entrypoint and labels; the binaries from the layer print the version baked in.
func TestImageHost(t *testing.T) {
	checkImage(t, []v1.Platform{{OS: "linux", Architecture: runtime.GOARCH}})
}

// checkImage builds the image for platforms twice from this tree: the same digest both times
// (reproducible); those platforms in the index; each config runs the adapter as 65532 with the OCI
// labels; the host's binaries taken out of the layer run and print the version baked in.
func checkImage(t *testing.T, platforms []v1.Platform) {
	t.Helper()
	b := Build{Version: "v0.0.0-imagetest", Commit: "0123456789abcdef", Source: "https://example.invalid/promql-adapter",
		Repo: "../..", Created: time.Unix(1767225600, 0).UTC(), Platforms: platforms}
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
	n := len(platforms) + 1 // one line per platform, then the index
	if !slices.Equal(first[:n], second[:n]) {
		t.Errorf("two builds of the same tree differ:\n%s\n%s", strings.Join(first[:n], "\n"), strings.Join(second[:n], "\n"))
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
	var got []string
	for _, m := range im.Manifests {
		got = append(got, m.Platform.OS+"/"+m.Platform.Architecture)
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
	var want []string
	for _, p := range platforms {
		want = append(want, p.OS+"/"+p.Architecture)
	}
	if !slices.Equal(got, want) {
		t.Errorf("platforms %v, want %v", got, want)
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
