package release

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Namespace is the namespace of the kubectl manifest (the chart's documented one).
const Namespace = "custom-metrics"

// SumsFile is the checksum file's name: sha256sum's format, one line per artifact.
const SumsFile = "SHA256SUMS"

// NotesFile is the release notes' name.
const NotesFile = "RELEASE_NOTES.md"

// Options are one release build.
type Options struct {
	Repo      string   // the repository root
	Out       string   // the artifacts' directory; emptied first
	Registry  Registry // where the chart says the image is, and where Push sends it
	Version   Version
	Helm      string   // Helm's binary
	Platforms []string // os/arch of the image index; empty = hack/image's default (linux/amd64, linux/arm64)
	Logf      func(format string, args ...any)
}

// Result is what Build made.
type Result struct {
	Version     Version
	IndexDigest v1.Hash  // the image index's digest, the same once pushed
	Layout      string   // the OCI layout Push reads
	Archive     string   // the layout as one tar (oci-archive)
	SBOMs       []string // one CycloneDX JSON per binary and platform
	Chart       string   // the packaged chart (.tgz)
	Manifest    string   // the chart rendered for kubectl apply -f
	Notes       string   // RELEASE_NOTES.md
	Sums        string   // SHA256SUMS
}

// Build makes every artifact of a release in o.Out: the image index (hack/image), the SBOMs of the
// binaries inside it, the packaged chart pointing at o.Registry's image, the kubectl manifest, the notes
// from CHANGELOG.md and SHA256SUMS over them.
func Build(ctx context.Context, o Options) (*Result, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := o.Registry.Validate(); err != nil {
		return nil, err
	}
	if !ValidSemVer(o.Version.SemVer) {
		return nil, fmt.Errorf("version %q is not a semantic version X.Y.Z[-pre]", o.Version.SemVer)
	}
	if o.Helm == "" {
		return nil, errors.New("helm: no binary given (--helm, PROMQL_ADAPTER_HELM)")
	}
	changelog, err := os.ReadFile(filepath.Join(o.Repo, "CHANGELOG.md"))
	if err != nil {
		return nil, err
	}
	notes, err := ChangelogSection(string(changelog), NotesSection(o.Version))
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", o.Version.Tag(), err)
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Version: o.Version}
	v := o.Version.SemVer

	// The image index, by hack/image.
	imageDir := filepath.Join(o.Out, "image")
	args := []string{"run", "./hack/image", "--out", imageDir, "--version", o.Version.Tag(), "--commit", o.Version.Commit,
		"--created", strconv.FormatInt(o.Version.Time.Unix(), 10)}
	if len(o.Platforms) > 0 {
		args = append(args, "--platforms", strings.Join(o.Platforms, ","))
	}
	logf("image: go %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.Repo
	imageOut, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, imageOut)
	}
	logf("image:\n%s", imageOut)
	res.Layout = filepath.Join(imageDir, "oci")
	idx, err := layout.ImageIndexFromPath(res.Layout)
	if err != nil {
		return nil, fmt.Errorf("read the image's OCI layout: %w", err)
	}
	if res.IndexDigest, err = idx.Digest(); err != nil {
		return nil, err
	}
	res.Archive = filepath.Join(o.Out, "promql-adapter-"+v+".oci.tar")
	if err := os.Rename(filepath.Join(imageDir, "promql-adapter.oci.tar"), res.Archive); err != nil {
		return nil, fmt.Errorf("image archive: %w", err)
	}

	// An SBOM per binary and platform, from the binaries in the image's layers.
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, desc := range im.Manifests {
		if desc.Platform == nil {
			return nil, fmt.Errorf("image index: manifest %s has no platform", desc.Digest)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, err
		}
		bins, err := GoBinaries(img)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", desc.Platform, err)
		}
		if len(bins) == 0 {
			return nil, fmt.Errorf("%s: the image holds no Go binary", desc.Platform)
		}
		for _, b := range bins {
			bom, err := SBOM(b.Data, b.Name, o.Version.Tag(), o.Version.Time)
			if err != nil {
				return nil, err
			}
			p := filepath.Join(o.Out, SBOMName(b.Name, *desc.Platform))
			var buf bytes.Buffer
			if err := WriteSBOM(&buf, bom); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
				return nil, err
			}
			res.SBOMs = append(res.SBOMs, p)
		}
	}

	// The chart, naming the registry's image, and the manifest for kubectl apply -f.
	if res.Chart, err = PackageChart(ctx, o.Helm, filepath.Join(o.Repo, "charts/promql-adapter"), o.Out, v, o.Registry.ImageRepo()); err != nil {
		return nil, err
	}
	manifest, err := RenderManifest(ctx, o.Helm, res.Chart, Namespace)
	if err != nil {
		return nil, err
	}
	res.Manifest = filepath.Join(o.Out, "promql-adapter-"+v+".yaml")
	if err := os.WriteFile(res.Manifest, manifest, 0o644); err != nil {
		return nil, err
	}
	certs, err := os.ReadFile(filepath.Join(o.Repo, "deploy/certs.sh"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "promql-adapter-certs.sh"), certs, 0o755); err != nil {
		return nil, err
	}

	// Notes, then the checksums over everything.
	res.Notes = filepath.Join(o.Out, NotesFile)
	if err := os.WriteFile(res.Notes, []byte(Notes(o.Version, o.Registry, res.IndexDigest, notes)), 0o644); err != nil {
		return nil, err
	}
	res.Sums = filepath.Join(o.Out, SumsFile)
	if err := WriteSums(o.Out, res.Sums); err != nil {
		return nil, err
	}
	return res, nil
}

// Notes are the release notes: the CHANGELOG section, then where the image and the chart are.
func Notes(v Version, r Registry, digest v1.Hash, section string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# promql-adapter %s\n\n%s\n\n## Artifacts\n\n", v.Tag(), section)
	fmt.Fprintf(&b, "- Image (linux): `%s:%s` = `%s@%s`\n", r.ImageRepo(), v.Tag(), r.ImageRepo(), digest)
	fmt.Fprintf(&b, "- Chart: `helm install promql-adapter %s/promql-adapter --version %s --namespace %s --create-namespace`\n",
		r.ChartRepo(), v.SemVer, Namespace)
	fmt.Fprintf(&b, "- Manifest: `promql-adapter-%s.yaml` (`kubectl apply -f`, then `promql-adapter-certs.sh`)\n", v.SemVer)
	fmt.Fprintf(&b, "- SBOMs (CycloneDX JSON, one per binary and platform), checksums in `%s`; see docs/install.md\n", SumsFile)
	return b.String()
}

// SBOMName is the file name of a binary's SBOM: <binary>_<os>_<arch>.cdx.json.
func SBOMName(binary string, p v1.Platform) string {
	arch := p.Architecture
	if p.Variant != "" {
		arch += p.Variant
	}
	return fmt.Sprintf("%s_%s_%s.cdx.json", binary, p.OS, arch)
}

// Binary is a Go binary found in an image.
type Binary struct {
	Name string // the file's base name
	Data []byte
}

// GoBinaries are the executable files of img's flattened file system that carry Go build info, sorted
// by name.
func GoBinaries(img v1.Image) ([]Binary, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []Binary
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the image's layers: %w", err)
		}
		if h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		if _, err := buildinfo.Read(bytes.NewReader(data)); err != nil {
			continue // not a Go binary
		}
		out = append(out, Binary{Name: path.Base(h.Name), Data: data})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WriteSums writes sha256sum-format checksums ("<hex>  <name>") of the regular files directly in dir,
// sorted by name, to out (which is left out).
func WriteSums(dir, out string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, e := range entries {
		if !e.Type().IsRegular() || filepath.Join(dir, e.Name()) == out {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, e.Name())
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

// ReadSums parses a sha256sum-format file into name → hex digest.
func ReadSums(data []byte) (map[string]string, error) {
	sums := map[string]string{}
	for i, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		sum, file, ok := strings.Cut(l, "  ")
		if !ok || len(sum) != 64 {
			return nil, fmt.Errorf("%s line %d: want \"<sha256>  <name>\", got %q", SumsFile, i+1, l)
		}
		sums[file] = sum
	}
	return sums, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Pushed is what Push sent.
type Pushed struct {
	Image     name.Digest // <registry>/promql-adapter@sha256:..., tagged v<version>
	ChartRef  string      // oci://<registry>/charts/promql-adapter, version the release's
	HelmPrint string      // helm push's output
}

// Push sends a built release to its registry: the image index (remote.WriteIndex) under the version's
// tag, then the chart (helm push).
func Push(ctx context.Context, o Options, res *Result) (*Pushed, error) {
	d, err := PushIndex(ctx, o.Registry, res.Layout, o.Version.Tag())
	if err != nil {
		return nil, err
	}
	if d.DigestStr() != res.IndexDigest.String() {
		return nil, fmt.Errorf("pushed index %s, built %s", d.DigestStr(), res.IndexDigest)
	}
	out, err := PushChart(ctx, o.Registry, o.Helm, res.Chart)
	if err != nil {
		return nil, err
	}
	return &Pushed{Image: d, ChartRef: o.Registry.ChartRepo() + "/promql-adapter", HelmPrint: out}, nil
}
