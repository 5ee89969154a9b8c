package release

import (
	"fmt"
	"regexp"
	"strings"
)

var sectionRE = regexp.MustCompile(`^## \[([^\]]+)\]`)

// Unreleased is the CHANGELOG section that dev builds take their notes from.
const Unreleased = "Unreleased"

// ChangelogSection is the body of the keep-a-changelog section "## [name] ..." of changelog: the lines
// after its heading up to the next "## [" heading or the link references at the end, trimmed. A missing
// or empty section is an error naming it.
func ChangelogSection(changelog, name string) (string, error) {
	lines := strings.Split(strings.ReplaceAll(changelog, "\r\n", "\n"), "\n")
	start := -1
	var body []string
	for i, l := range lines {
		m := sectionRE.FindStringSubmatch(l)
		if start < 0 {
			if m != nil && m[1] == name {
				start = i
			}
			continue
		}
		if m != nil || linkRefRE.MatchString(l) {
			break
		}
		body = append(body, l)
	}
	if start < 0 {
		return "", fmt.Errorf("CHANGELOG.md has no section \"## [%s]\"", name)
	}
	text := strings.TrimSpace(strings.Join(body, "\n"))
	if text == "" {
		return "", fmt.Errorf("CHANGELOG.md: section \"## [%s]\" is empty", name)
	}
	return text, nil
}

// linkRefRE matches the link reference definitions keep-a-changelog ends with ("[0.1.0]: https://...").
var linkRefRE = regexp.MustCompile(`^\[[^\]]+\]: \S+`)

// NotesSection is the CHANGELOG section a version's notes come from: the version's own for a release
// tag, [Unreleased] for a dev build.
func NotesSection(v Version) string {
	if v.Exact {
		return v.SemVer
	}
	return Unreleased
}
