package release

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSemVerFromDescribe(t *testing.T) {
	for _, tc := range []struct {
		describe, sha string
		dirty         bool
		want          string
		exact         bool
		err           string
	}{
		{describe: "", sha: "abc1234", want: "0.0.0-dev.gabc1234"},
		{describe: "", sha: "0123456", dirty: true, want: "0.0.0-dev.g0123456.dirty"},
		{describe: "v0.1.0-0-gabc1234", want: "0.1.0", exact: true},
		{describe: "v0.1.0-0-gabc1234-dirty", want: "0.1.1-dev.0.gabc1234.dirty"},
		{describe: "v0.1.0-0-gabc1234", dirty: true, want: "0.1.1-dev.0.gabc1234.dirty"},
		{describe: "v0.1.9-3-gabc1234", want: "0.1.10-dev.3.gabc1234"},
		{describe: "v1.0.0-rc.1-0-gabc1234", want: "1.0.0-rc.1", exact: true},
		{describe: "v1.0.0-rc.1-2-gabc1234", want: "1.0.0-rc.1.dev.2.gabc1234"},
		{describe: "v1.0-0-gabc1234", err: "not a semantic version"},
		{describe: "release-1", err: "want vX.Y.Z"},
		{describe: "", sha: "", err: "no tag and no commit"},
	} {
		got, exact, err := SemVerFromDescribe(tc.describe, tc.sha, tc.dirty)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.describe, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || exact != tc.exact {
			t.Errorf("%q dirty=%v: %q exact=%v err=%v, want %q exact=%v", tc.describe, tc.dirty, got, exact, err, tc.want, tc.exact)
		}
		if !ValidSemVer(got) {
			t.Errorf("%q: %q is not valid semver", tc.describe, got)
		}
	}
}

func TestWithVersion(t *testing.T) {
	for _, tc := range []struct {
		in, section, err string
	}{
		{in: "1.2.3", section: "1.2.3"},
		{in: "1.2.3-rc.1", section: Unreleased},
		{in: "v1.2.3", err: "without a leading v"},
		{in: "1.2", err: "X.Y.Z"},
	} {
		v, err := WithVersion(Version{SemVer: "0.0.0-dev.gabc1234"}, tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || v.SemVer != tc.in || NotesSection(v) != tc.section || v.Tag() != "v"+tc.in {
			t.Errorf("%q: %+v %v, notes from %q", tc.in, v, err, NotesSection(v))
		}
	}
}

const changelog = `# Changelog

## [Unreleased]

### Added
- next thing

## [0.2.0] - 2026-12-07

### Fixed
- a bug

## [0.1.0] - 2026-11-01

## [0.0.1] - 2026-10-01
- first

[Unreleased]: https://example.invalid/compare/v0.2.0...HEAD
[0.2.0]: https://example.invalid/compare/v0.1.0...v0.2.0
`

func TestChangelogSection(t *testing.T) {
	for _, tc := range []struct{ name, want, err string }{
		{name: "Unreleased", want: "### Added\n- next thing"},
		{name: "0.2.0", want: "### Fixed\n- a bug"},
		{name: "0.0.1", want: "- first"},
		{name: "0.1.0", err: `section "## [0.1.0]" is empty`},
		{name: "0.3.0", err: `no section "## [0.3.0]"`},
	} {
		got, err := ChangelogSection(changelog, tc.name)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestProjectChangelog: CHANGELOG.md has the [Unreleased] section dev builds take their notes from,
// and a section for every version heading it lists.
func TestProjectChangelog(t *testing.T) {
	data, err := os.ReadFile("../../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ChangelogSection(string(data), Unreleased); err != nil {
		t.Error(err)
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if m := sectionRE.FindStringSubmatch(l); m != nil && m[1] != Unreleased {
			n++
			if !ValidSemVer(m[1]) {
				t.Errorf("CHANGELOG.md: heading %q: not a semantic version", l)
			}
			if _, err := ChangelogSection(string(data), m[1]); err != nil {
				t.Error(err)
			}
		}
	}
	if n == 0 {
		t.Error("CHANGELOG.md has no released version")
	}
}

func TestSetImageRepository(t *testing.T) {
	for _, tc := range []struct{ name, in, repo, want, err string }{
		{name: "plain", in: "# c\nimage:\n  repository: ghcr.io/a/b # keep\n  tag: \"\"\nother:\n  repository: x\n",
			repo: "127.0.0.1:5000/p/promql-adapter", want: "# c\nimage:\n  repository: 127.0.0.1:5000/p/promql-adapter # keep\n  tag: \"\"\nother:\n  repository: x\n"},
		{name: "quoted", in: "image:\n  tag: v1\n  repository: \"ghcr.io/a/b\"\n", repo: "r.example/x/promql-adapter",
			want: "image:\n  tag: v1\n  repository: r.example/x/promql-adapter\n"},
		{name: "missing", in: "image:\n  tag: v1\n", repo: "r/x", err: "no image.repository"},
		{name: "bad repo", in: "image:\n  repository: a\n", repo: "a b", err: "without spaces"},
		{name: "not a string", in: "image:\n  repository: [a]\n", repo: "r/x", err: "not a string"},
	} {
		got, err := SetImageRepository([]byte(tc.in), tc.repo)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %v\n%s\nwant\n%s", tc.name, err, got, tc.want)
		}
	}
	// The chart's own values.yaml: only the repository line changes.
	values, err := os.ReadFile("../../../charts/promql-adapter/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := SetImageRepository(values, "127.0.0.1:5000/x/promql-adapter")
	if err != nil {
		t.Fatal(err)
	}
	a, b := strings.Split(string(values), "\n"), strings.Split(string(got), "\n")
	if len(a) != len(b) {
		t.Fatalf("line count %d → %d", len(a), len(b))
	}
	changed := 0
	for i := range a {
		if a[i] != b[i] {
			changed++
			if b[i] != "  repository: 127.0.0.1:5000/x/promql-adapter" {
				t.Errorf("line %d: %q → %q", i+1, a[i], b[i])
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d lines changed, want 1", changed)
	}
}

// TestSBOMOfReleaseBinary: the SBOM of hack/release's own binary lists exactly the modules its build
// info holds (a test binary has none, so the command is built).
func TestSBOMOfReleaseBinary(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "release")
	if out, err := exec.Command("go", "build", "-o", exe, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0)
	bom, err := SBOM(data, "release.test", "v0.0.0-dev.gabc1234", created)
	if err != nil {
		t.Fatal(err)
	}
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		want[m.Path+"@"+m.Version] = true
	}
	got := map[string]bool{}
	for _, c := range *bom.Components {
		got[c.Name+"@"+c.Version] = true
		if c.PackageURL != purl(c.Name, c.Version) || c.BOMRef != c.PackageURL {
			t.Errorf("%s: purl %q bom-ref %q", c.Name, c.PackageURL, c.BOMRef)
		}
	}
	if len(bi.Deps) < 5 || len(got) != len(want) || len(*bom.Components) != len(bi.Deps) {
		t.Errorf("%d components, build info has %d modules", len(*bom.Components), len(bi.Deps))
	}
	for m := range want {
		if !got[m] {
			t.Errorf("missing %s", m)
		}
	}
	if !got["github.com/CycloneDX/cyclonedx-go@v0.12.0"] {
		t.Error("cyclonedx-go not listed")
	}
	if mc := bom.Metadata.Component; mc.PackageURL != "pkg:golang/github.com/promql-adapter/promql-adapter@v0.0.0-dev.gabc1234#hack/release" {
		t.Errorf("main component's purl %q", mc.PackageURL)
	}
	if bom.Metadata.Timestamp != "2023-11-14T22:13:20Z" || bom.Metadata.Component.Name != "release.test" {
		t.Errorf("metadata %+v", bom.Metadata)
	}
	// Round trip through JSON, and the same binary gives the same document.
	var a, b bytes.Buffer
	if err := WriteSBOM(&a, bom); err != nil {
		t.Fatal(err)
	}
	bom2, _ := SBOM(data, "release.test", "v0.0.0-dev.gabc1234", created)
	if err := WriteSBOM(&b, bom2); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("two SBOMs of one binary differ")
	}
	back, err := ReadSBOM(&a)
	if err != nil {
		t.Fatal(err)
	}
	if len(*back.Components) != len(*bom.Components) || back.SerialNumber != bom.SerialNumber || !strings.HasPrefix(back.SerialNumber, "urn:uuid:") {
		t.Errorf("round trip: %d components, serial %q", len(*back.Components), back.SerialNumber)
	}
	if _, err := SBOM([]byte("#!/bin/sh\n"), "script", "v1", created); err == nil || !strings.Contains(err.Error(), "script: read Go build info") {
		t.Errorf("a non-Go file: %v", err)
	}
}

func TestRegistry(t *testing.T) {
	for _, tc := range []struct {
		path     string
		insecure bool
		plain    bool
		err      string
	}{
		{path: "127.0.0.1:5000/x", plain: true},
		{path: "localhost:5000", plain: true},
		{path: "[::1]:5000/a/b", plain: true},
		{path: "ghcr.io/promql-adapter"},
		{path: "10.0.0.5:5000/x"},
		{path: "10.0.0.5:5000/x", insecure: true, plain: true},
		{path: "", err: "empty"},
		{path: "https://ghcr.io/x", err: "without a scheme"},
		{path: "ghcr.io/x/", err: "trailing slash"},
		{path: "ghcr.io/X Y", err: "ghcr.io/X Y"},
	} {
		r := Registry{Path: tc.path, Insecure: tc.insecure}
		err := r.Validate()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil || r.PlainHTTP() != tc.plain {
			t.Errorf("%q: err %v plain %v, want %v", tc.path, err, r.PlainHTTP(), tc.plain)
		}
	}
}

// TestHTTPGuard: plain HTTP goes through to loopback only, or anywhere when insecure.
func TestHTTPGuard(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	g := httpGuard{next: http.DefaultTransport}
	resp, err := g.RoundTrip(httptest.NewRequest("GET", srv.URL, nil).WithContext(t.Context()))
	if err != nil {
		t.Fatalf("loopback: %v", err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", "http://10.0.0.5:5000/v2/", nil)
	if _, err := g.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "--insecure-registry") {
		t.Errorf("private address over plain HTTP: %v", err)
	}
}

func TestSums(t *testing.T) {
	dir := t.TempDir()
	for n, c := range map[string]string{"b.tgz": "chart", "a.json": "sbom"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "image"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, SumsFile)
	if err := WriteSums(dir, out); err != nil {
		t.Fatal(err)
	}
	if err := WriteSums(dir, out); err != nil { // again: the old SHA256SUMS is not summed
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := sum("sbom") + "  a.json\n" + sum("chart") + "  b.tgz\n"
	if string(data) != want {
		t.Errorf("SHA256SUMS:\n%s\nwant\n%s", data, want)
	}
	sums, err := ReadSums(data)
	if err != nil || len(sums) != 2 || sums["b.tgz"] != sum("chart") {
		t.Errorf("ReadSums: %v %v", sums, err)
	}
	if _, err := ReadSums([]byte("nope\n")); err == nil {
		t.Error("a bad line parsed")
	}
}
