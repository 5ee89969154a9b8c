package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestImageDoc keeps docs/image.md in step with the image: the paths its table lists are the
// layer's files, the CA package's version and certificate count are the build's, and the label
// keys, the user and every flag it names are real (flags: in a binary's --help golden).
func TestImageDoc(t *testing.T) {
	b, _ := hostBuild(t)
	data, err := os.ReadFile(filepath.Join(b.Repo, "docs", "image.md"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	lock, err := ReadCALock("ca-certificates.lock")
	if err != nil {
		t.Fatal(err)
	}
	files := layerFiles(t, hostImageIn(t, filepath.Join(b.Out, "oci")))

	_, holds, _ := strings.Cut(page, "## What the image holds\n")
	holds, _, _ = strings.Cut(holds, "\n## ")
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(/[^`]+)`").FindAllStringSubmatch(holds, -1) {
		listed = append(listed, m[1])
	}
	var layer []string
	for name := range maps.Keys(files) {
		if !strings.HasSuffix(name, "/") || name == "tmp/" {
			layer = append(layer, "/"+strings.TrimSuffix(name, "/"))
		}
	}
	slices.Sort(listed)
	slices.Sort(layer)
	if !slices.Equal(listed, layer) {
		t.Errorf("docs/image.md lists %v; the layer holds %v", listed, layer)
	}

	m := regexp.MustCompile("`ca-certificates` package, version `([^`]+)` \\((\\d+) certificates\\)").FindStringSubmatch(page)
	certs := bytes.Count(files[BundlePath], []byte("-----BEGIN CERTIFICATE-----"))
	if m == nil || m[1] != lock.Version || m[2] != strconv.Itoa(certs) {
		t.Errorf("docs/image.md names the package as %q; the build has version %s, %d certificates", m, lock.Version, certs)
	}
	for _, s := range []string{"`" + LabelCAVersion + "`", "`" + LabelCASHA256 + "`", "`" + User + "`"} {
		if !strings.Contains(page, s) {
			t.Errorf("docs/image.md does not name %s", s)
		}
	}

	helps, err := filepath.Glob(filepath.Join(b.Repo, "testdata", "golden", "help", "*.txt"))
	if err != nil || len(helps) == 0 {
		t.Fatalf("no help goldens: %v", err)
	}
	var help strings.Builder
	for _, h := range helps {
		data, err := os.ReadFile(h)
		if err != nil {
			t.Fatal(err)
		}
		help.Write(data)
	}
	flags := regexp.MustCompile("`(--[a-z][a-z0-9-]*[a-z0-9])").FindAllStringSubmatch(page, -1)
	if len(flags) < 2 {
		t.Errorf("docs/image.md names %d flags", len(flags))
	}
	for _, f := range flags {
		name := strings.TrimLeft(f[1], "-")
		if !regexp.MustCompile(`(?m)(^|\s)--?` + regexp.QuoteMeta(name) + `([\s=,]|$)`).MatchString(help.String()) {
			t.Errorf("docs/image.md names %s, which no binary's --help has", f[1])
		}
	}
}
