package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// otherProjectsFlags are flags the pages name that belong to other programs' command lines.
var otherProjectsFlags = map[string]string{"--enable-apiservice-patching": "KEDA's operator"}

// TestTLSAndKEDAPagesFlagsExist: every flag docs/tls.md and docs/keda.md name (outside code blocks) is in a
// binary's --help golden, except the listed flags of other projects.
func TestTLSAndKEDAPagesFlagsExist(t *testing.T) {
	helps, err := filepath.Glob(filepath.Join(root, "testdata/golden/help/*.txt"))
	if err != nil || len(helps) == 0 {
		t.Fatalf("no help goldens: %v", err)
	}
	var all strings.Builder
	for _, h := range helps {
		data, err := os.ReadFile(h)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(data)
	}
	for _, page := range []string{"docs/tls.md", "docs/keda.md"} {
		data, err := os.ReadFile(filepath.Join(root, page))
		if err != nil {
			t.Fatal(err)
		}
		flags := flagRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(string(data), ""), -1)
		if len(flags) < 2 {
			t.Errorf("%s names only %d flags", page, len(flags))
		}
		for _, f := range flags {
			if _, ok := otherProjectsFlags[f[1]]; ok {
				continue
			}
			name := strings.TrimLeft(f[1], "-")
			if !regexp.MustCompile(`(?m)(^|\s)--?` + regexp.QuoteMeta(name) + `([\s=,]|$)`).MatchString(all.String()) {
				t.Errorf("%s names %s, which no binary's --help has", page, f[1])
			}
		}
	}
}
