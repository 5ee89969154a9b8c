// Package release builds promql-adapter's release artifacts (the image index, an SBOM per binary, the
// packaged chart, a kubectl manifest, release notes from CHANGELOG.md, SHA256SUMS) and pushes the image
// index and the chart to an OCI registry. hack/release is its command; make release and make
// release-build call it.
package release

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Version is a release's version in the forms its artifacts use.
type Version struct {
	SemVer string    // the chart's version and appVersion: 0.1.0, 0.1.1-dev.3.gabc1234, 0.0.0-dev.gabc1234
	Exact  bool      // true when the tree is a clean checkout of a release tag
	Commit string    // the full commit hash
	Time   time.Time // the commit's time, stamped on every artifact
}

// Tag is the image tag and the git tag form of the version: "v" and the semver.
func (v Version) Tag() string { return "v" + v.SemVer }

var (
	semverRE   = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)
	describeRE = regexp.MustCompile(`^v(.+)-([0-9]+)-g([0-9a-f]+)(-dirty)?$`)
)

// ValidSemVer reports whether s is a semantic version without build metadata (Helm's chart version and
// an OCI tag both take it as is).
func ValidSemVer(s string) bool { return semverRE.MatchString(s) }

// SemVerFromDescribe turns `git describe --tags --long --dirty --match 'v[0-9]*'` into a semantic version.
// A clean checkout of tag vX.Y.Z gives X.Y.Z (exact). N commits past it give X.Y.(Z+1)-dev.N.g<sha>, which
// sorts after X.Y.Z and before the next release, the way Go's pseudo-versions do; past a pre-release tag
// vX.Y.Z-rc.1 they give X.Y.Z-rc.1.dev.N.g<sha>. With no tag (describe empty) the version is
// 0.0.0-dev.g<shortSHA>: the "g" keeps an all-digit hash with a leading zero a valid identifier. A dirty
// tree adds ".dirty" and is never exact.
func SemVerFromDescribe(describe, shortSHA string, dirty bool) (string, bool, error) {
	suffix := ""
	if dirty {
		suffix = ".dirty"
	}
	if describe == "" {
		if shortSHA == "" {
			return "", false, fmt.Errorf("no tag and no commit to name a version after")
		}
		return "0.0.0-dev.g" + shortSHA + suffix, false, nil
	}
	m := describeRE.FindStringSubmatch(describe)
	if m == nil {
		return "", false, fmt.Errorf("git describe %q: want vX.Y.Z-N-gSHA[-dirty]", describe)
	}
	tag, n, sha := m[1], m[2], m[3]
	if m[4] != "" {
		dirty, suffix = true, ".dirty"
	}
	p := semverRE.FindStringSubmatch(tag)
	if p == nil {
		return "", false, fmt.Errorf("tag v%s is not a semantic version vX.Y.Z[-pre]", tag)
	}
	if n == "0" && !dirty {
		return tag, true, nil
	}
	if p[4] != "" {
		return tag + ".dev." + n + ".g" + sha + suffix, false, nil
	}
	patch, err := strconv.Atoi(p[3])
	if err != nil {
		return "", false, fmt.Errorf("tag v%s: patch %q: %w", tag, p[3], err)
	}
	return fmt.Sprintf("%s.%s.%d-dev.%s.g%s%s", p[1], p[2], patch+1, n, sha, suffix), false, nil
}

// GitVersion is the version of the checkout at repo (see SemVerFromDescribe), its commit and the commit's time.
func GitVersion(ctx context.Context, repo string) (Version, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = repo
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
			}
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var v Version
	var err error
	if v.Commit, err = git("rev-parse", "HEAD"); err != nil {
		return v, err
	}
	short, err := git("rev-parse", "--short=7", "HEAD")
	if err != nil {
		return v, err
	}
	ct, err := git("log", "-1", "--format=%ct")
	if err != nil {
		return v, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return v, fmt.Errorf("commit time %q: %w", ct, err)
	}
	v.Time = time.Unix(sec, 0).UTC()
	status, err := git("status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return v, err
	}
	describe, err := git("describe", "--tags", "--long", "--match", "v[0-9]*")
	if err != nil {
		describe = "" // no tag yet
	}
	v.SemVer, v.Exact, err = SemVerFromDescribe(describe, short, status != "")
	return v, err
}

// WithVersion is v with its version replaced by semver (the --version flag): X.Y.Z is a release (exact, notes
// from its own CHANGELOG section), X.Y.Z-pre a pre-release (notes from [Unreleased]).
func WithVersion(v Version, semver string) (Version, error) {
	if !ValidSemVer(semver) {
		return v, fmt.Errorf("--version %q: want a semantic version X.Y.Z[-pre] without a leading v", semver)
	}
	v.SemVer, v.Exact = semver, !strings.Contains(semver, "-")
	return v, nil
}
