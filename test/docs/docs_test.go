// Package docs keeps the Markdown pages in step with the repository: every relative link resolves, every
// anchor names a heading, every flag a page names is in a binary's --help, every flag of a --help is in
// docs/configuration.md, and every example rule passes check (examples_test.go).
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const root = "../.."

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	flagRE    = regexp.MustCompile("`(--[a-z][a-z0-9_.-]*[a-z0-9])(?:[^*a-z0-9_.-]|$)") // not --prefix-* wildcards
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

// helpGoldens maps each binary (or command) to its --help golden, which the binaries' own tests keep equal to
// their --help; the key is its section heading in docs/configuration.md.
var helpGoldens = map[string]string{
	"promql-adapter":         "promql-adapter.txt",
	"promql-adapter check":   "promql-adapter-check.txt",
	"promql-adapter explain": "promql-adapter-explain.txt",
	"promql-adapter convert": "promql-adapter-convert.txt",
	"promql-wake":            "promql-wake.txt",
	"promql-activator":       "promql-activator.txt",
}

// helpFlagRE finds a flag's name where a help text defines it: pflag's "  -v, --v Level", "      --config string"
// and Go's flag package's "  -config string".
var helpFlagRE = regexp.MustCompile(`(?m)^\s{2,}(?:-[A-Za-z0-9], )?--?([A-Za-z0-9][A-Za-z0-9_.-]*)`)

// helpFlags lists the flags one help golden defines.
func helpFlags(t *testing.T, golden string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "testdata/golden/help", golden))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range helpFlagRE.FindAllStringSubmatch(string(data), -1) {
		out = append(out, m[1])
	}
	return out
}

// foreignFlags are flags the pages name that belong to other programs (kube-apiserver, Prometheus, KEDA, make
// demo), with the program.
var foreignFlags = map[string]string{
	"--enable-aggregator-routing":    "kube-apiserver",
	"--feature-gates":                "kube-apiserver, kube-controller-manager",
	"--web.config.file":              "prometheus",
	"--query.max-concurrency":        "prometheus",
	"--enable-cert-rotation":         "KEDA",
	"--metrics-service-bind-address": "KEDA",
	"--metrics-service-address":      "KEDA",
	"--health-probe-bind-address":    "KEDA",
	"--port":                         "KEDA's metrics server",
	"--no-wait":                      "make demo",
	"--enable-apiservice-patching":   "KEDA",
	"--set":                          "helm",
	"--plain-http":                   "helm",
	"--reuse-values":                 "helm",
}

// TestDocsFlagsExist: every flag a page names is in some binary's --help golden, or is another program's.
func TestDocsFlagsExist(t *testing.T) {
	known := map[string]bool{"help": true} // every binary and command answers --help
	for _, g := range helpGoldens {
		for _, f := range helpFlags(t, g) {
			known[f] = true
		}
	}
	if len(known) < 100 {
		t.Fatalf("the help goldens define only %d flags", len(known))
	}
	for _, p := range pages(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range undefinedFlags(string(data), known) {
			t.Errorf("%s names %s, which no binary's --help has (another program's flag goes in foreignFlags)", strings.TrimPrefix(p, root+"/"), f)
		}
	}
}

// undefinedFlags lists the flags a page names in backticks that are neither known nor another program's.
func undefinedFlags(page string, known map[string]bool) []string {
	var out []string
	for _, f := range flagRE.FindAllStringSubmatch(page, -1) {
		if !known[strings.TrimLeft(f[1], "-")] && foreignFlags[f[1]] == "" && !slices.Contains(out, f[1]) {
			out = append(out, f[1])
		}
	}
	return out
}

// section is the text of a page under a "## title" heading, up to the next heading of that level.
func section(page, title string) (string, bool) {
	_, rest, ok := strings.Cut(page, "\n## "+title+"\n")
	if !ok {
		return "", false
	}
	body, _, _ := strings.Cut(rest, "\n## ")
	return body, true
}

// TestHelpFlagsDocumented: every flag of each binary's --help is in that binary's section of
// docs/configuration.md.
func TestHelpFlagsDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "docs/configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	for bin, golden := range helpGoldens {
		flags := helpFlags(t, golden)
		if len(flags) == 0 {
			t.Errorf("%s: no flags in %s", bin, golden)
		}
		for _, f := range undocumentedFlags(string(data), bin, flags) {
			t.Errorf("docs/configuration.md, section %q: %s is in %s's --help (%s) but not documented", bin, f, bin, golden)
		}
	}
}

// undocumentedFlags lists the flags that the page's section for bin does not name as `--flag`.
func undocumentedFlags(page, bin string, flags []string) []string {
	body, ok := section(page, bin)
	if !ok {
		return []string{"(no section \"## " + bin + "\")"}
	}
	var out []string
	for _, f := range flags {
		if !strings.Contains(body, "`--"+f+"`") {
			out = append(out, "--"+f)
		}
	}
	return out
}

// TestFlagChecksFail: the two checks above find an undocumented flag and a flag no binary has.
func TestFlagChecksFail(t *testing.T) {
	page := "# Config\n\n## promql-wake\n\n| `--listen` | ... |\n\n## promql-activator\n\n| `--workers` |\n"
	if got := undocumentedFlags(page, "promql-wake", []string{"listen", "workers"}); !slices.Equal(got, []string{"--workers"}) {
		t.Errorf("undocumentedFlags = %q, want [--workers]", got)
	}
	if got := undocumentedFlags(page, "promql-adapter", []string{"config"}); len(got) != 1 {
		t.Errorf("a missing section is not reported: %q", got)
	}
	known := map[string]bool{"listen": true, "workers": true}
	if got := undefinedFlags("use `--listen` and `--lisen`, `--feature-gates` (kube-apiserver) and `--forward-*`", known); !slices.Equal(got, []string{"--lisen"}) {
		t.Errorf("undefinedFlags = %q, want [--lisen]", got)
	}
}

// TestExplainHPAExample: the example output of explain hpa in docs/troubleshooting.md is the text golden that
// inspect's TestExplainHPA keeps equal to the command's output.
func TestExplainHPAExample(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join(root, "inspect/testdata/golden/explain_hpa.txt"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(root, "docs/troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	body, ok := section(string(page), "Why this replica count: explain hpa")
	if !ok || !strings.Contains(body, "```\n"+string(golden)+"```\n") {
		t.Error("docs/troubleshooting.md, section \"Why this replica count: explain hpa\": the example is not inspect/testdata/golden/explain_hpa.txt")
	}
}
