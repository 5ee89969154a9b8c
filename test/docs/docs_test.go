// Package docs keeps the Markdown pages in step with the repository: every relative link resolves, every
// anchor names a heading, and every flag the security page names is in a binary's --help.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const root = "../.."

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	flagRE    = regexp.MustCompile("`(--[a-z][a-z0-9-]*[a-z0-9])(?:[^*a-z0-9-]|$)") // not --prefix-* wildcards
	fenceRE   = regexp.MustCompile("(?s)```.*?```")
)

// pages lists the Markdown pages a user reads: the root's, docs/ and the charts' READMEs.
func pages(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, glob := range []string{"*.md", "docs/*.md", "charts/*/README.md"} {
		m, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	sort.Strings(out)
	if len(out) < 4 {
		t.Fatalf("found only %d Markdown pages: %v", len(out), out)
	}
	return out
}

// slug is GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(string(data), ""), -1) {
		out[slug(m[1])] = true
	}
	return out
}

// brokenLinks lists the relative links of one page that name no file, or no heading of the file.
func brokenLinks(t *testing.T, page string) []string {
	t.Helper()
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, m := range linkRE.FindAllStringSubmatch(fenceRE.ReplaceAllString(string(data), ""), -1) {
		link := m[1]
		if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
			continue
		}
		file, anchor, _ := strings.Cut(link, "#")
		target := page
		if file != "" {
			target = filepath.Join(filepath.Dir(page), file)
			if _, err := os.Stat(target); err != nil {
				bad = append(bad, link+": no such file")
				continue
			}
		}
		if anchor != "" && strings.HasSuffix(target, ".md") && !anchors(t, target)[anchor] {
			bad = append(bad, link+": no such heading")
		}
	}
	return bad
}

func TestLinksResolve(t *testing.T) {
	for _, p := range pages(t) {
		for _, b := range brokenLinks(t, p) {
			t.Errorf("%s: %s", strings.TrimPrefix(p, root+"/"), b)
		}
	}
}

// TestBrokenLinkIsFound: the check above can fail.
func TestBrokenLinkIsFound(t *testing.T) {
	dir := t.TempDir()
	page := filepath.Join(dir, "a.md")
	if err := os.WriteFile(filepath.Join(dir, "b.md"), []byte("# Real heading\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, []byte("[ok](b.md#real-heading) [gone](c.md) [anchor](b.md#nope) [self](#nope)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := brokenLinks(t, page)
	want := []string{"c.md: no such file", "b.md#nope: no such heading", "#nope: no such heading"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("brokenLinks = %q, want %q", got, want)
	}
}

// TestSecurityPageFlagsExist: every flag docs/security.md names is in some binary's --help golden (which the
// binaries' own tests keep equal to their --help).
func TestSecurityPageFlagsExist(t *testing.T) {
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
	// Forwarding's flags take specs whose options (auth=, ca-file=) are documented in the README, not in --help.
	help := all.String()
	page, err := os.ReadFile(filepath.Join(root, "docs/security.md"))
	if err != nil {
		t.Fatal(err)
	}
	flags := flagRE.FindAllStringSubmatch(string(page), -1)
	if len(flags) < 5 {
		t.Fatalf("docs/security.md names only %d flags", len(flags))
	}
	for _, f := range flags {
		name := strings.TrimLeft(f[1], "-") // Go's flag package prints -name, pflag --name
		if !regexp.MustCompile(`(?m)(^|\s)--?` + regexp.QuoteMeta(name) + `([\s=,]|$)`).MatchString(help) {
			t.Errorf("docs/security.md names %s, which no binary's --help has", f[1])
		}
	}
}
