package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platforms are the architectures the index holds.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Binaries are the commands the image holds, at the root of its file system; the first is the entrypoint.
var Binaries = []string{"promql-adapter", "promql-wake", "promql-activator"}

// User is the image's non-root user and group (distroless's "nonroot").
const User = "65532:65532"

const versionPkg = "github.com/promql-adapter/promql-adapter/version"

// Build is one image build.
type Build struct {
	Out, Version, Commit, Source, Repo string
	Created                            time.Time
	Platforms                          []v1.Platform // the index's platforms; empty means all of Platforms
	CALock                             string        // the CA bundle's lock file; empty means <Repo>/hack/image/ca-certificates.lock
	DebCache                           string        // where the pinned .deb is kept; empty means <Repo>/.cache/debs
}

// Labels naming the Debian package the CA bundle comes from.
const (
	LabelCAVersion = "com.github.promql-adapter.ca-certificates.version"
	LabelCASHA256  = "com.github.promql-adapter.ca-certificates.sha256"
)

// Labels are the OCI annotations on every image config and on the index; ca is the CA bundle's package.
func (b Build) Labels(ca CALock) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    "promql-adapter",
		"org.opencontainers.image.version":  b.Version,
		"org.opencontainers.image.revision": b.Commit,
		"org.opencontainers.image.source":   b.Source,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.created":  b.Created.Format(time.RFC3339),
		LabelCAVersion:                      ca.Version,
		LabelCASHA256:                       ca.SHA256,
	}
}

// Run builds the binaries, the index, the layout and the archive; it returns one line per
// platform and one for the index: digest and size. ctx bounds the CA package's download.
func (b Build) Run(ctx context.Context) ([]string, error) {
	work, err := os.MkdirTemp("", "promql-adapter-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	lockFile, cache := b.CALock, b.DebCache
	if lockFile == "" {
		lockFile = filepath.Join(b.Repo, "hack", "image", "ca-certificates.lock")
	}
	if cache == "" {
		cache = filepath.Join(b.Repo, ".cache", "debs")
	}
	lock, err := ReadCALock(lockFile)
	if err != nil {
		return nil, err
	}
	deb, err := FetchDeb(ctx, lock, cache)
	if err != nil {
		return nil, err
	}
	ca, err := ReadCAFiles(deb)
	if err != nil {
		return nil, fmt.Errorf("%s %s (pinned in %s): %w", lock.Package, lock.Version, lock.File, err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.Annotations(idx, b.Labels(lock)).(v1.ImageIndex)
	var report []string
	platforms := b.Platforms
	if len(platforms) == 0 {
		platforms = Platforms
	}
	for _, p := range platforms {
		dir := filepath.Join(work, p.Architecture)
		for _, name := range Binaries {
			if err := b.compile(p, name, filepath.Join(dir, name)); err != nil {
				return nil, err
			}
		}
		img, err := b.image(p, dir, lock, ca)
		if err != nil {
			return nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		size, err := imageSize(img)
		if err != nil {
			return nil, err
		}
		report = append(report, fmt.Sprintf("%s/%s %s %d bytes (compressed layers)", p.OS, p.Architecture, d, size))
		pl := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pl}})
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	report = append(report, "index "+d.String())
	oci := filepath.Join(b.Out, "oci")
	if err := os.RemoveAll(oci); err != nil {
		return nil, err
	}
	if _, err := layout.Write(oci, idx); err != nil {
		return nil, fmt.Errorf("write OCI layout: %w", err)
	}
	archive := filepath.Join(b.Out, "promql-adapter.oci.tar")
	if err := b.archive(oci, archive); err != nil {
		return nil, err
	}
	report = append(report, "layout "+oci, "archive "+archive,
		fmt.Sprintf("CA bundle: %d certificates from %s %s", ca.Certs, lock.Package, lock.Version))
	return report, nil
}

// compile builds one static binary for p.
func (b Build) compile(p v1.Platform, name, out string) error {
	ld := fmt.Sprintf("-s -w -buildid= -X %s.Version=%s -X %s.Commit=%s", versionPkg, b.Version, versionPkg, b.Commit)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ld, "-o", out, "./cmd/"+name)
	cmd.Dir = b.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOFLAGS=-buildvcs=false")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", name, p.OS, p.Architecture, err, msg)
	}
	return nil
}

// image is one platform's image: an empty base, one layer, the config.
func (b Build) image(p v1.Platform, dir string, lock CALock, ca CAFiles) (v1.Image, error) {
	layerTar, err := b.layer(dir, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: b.Created}, CreatedBy: "hack/image: " + fmt.Sprint(Binaries) + " " + lock.Package + "=" + lock.Version,
			Comment: "static binaries and Debian's CA bundle, no shell"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = p.OS, p.Architecture, v1.Time{Time: b.Created}
	cf.Config.User = User
	cf.Config.Entrypoint = []string{"/" + Binaries[0]}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Labels = b.Labels(lock)
	return mutate.ConfigFile(img, cf)
}

// layer is the uncompressed layer: the binaries at /, an empty /tmp, the CA bundle and its
// package's copyright; every header fixed.
func (b Build) layer(dir string, ca CAFiles) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(name string, mode int64, typ byte, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: mode, Typeflag: typ, Size: size, ModTime: b.Created, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr("tmp/", 0o1777, tar.TypeDir, 0)); err != nil {
		return nil, err
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(hdr(name, mode, tar.TypeReg, int64(len(data)))); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, name := range Binaries {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if err := file(name, 0o755, data); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "usr/", "usr/share/", "usr/share/doc/", "usr/share/doc/ca-certificates/"} {
		if err := tw.WriteHeader(hdr(d, 0o755, tar.TypeDir, 0)); err != nil {
			return nil, err
		}
	}
	if err := file(BundlePath, 0o644, ca.Bundle); err != nil {
		return nil, err
	}
	if err := file(CopyrightPath, 0o644, ca.Copyright); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// archive writes the OCI layout directory as one tar (an "oci-archive" for podman, skopeo, crane).
func (b Build) archive(dir, out string) error {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: b.Created, Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// imageSize is the sum of an image's compressed layer sizes.
func imageSize(img v1.Image) (int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			return 0, err
		}
		n += s
	}
	return n, nil
}
