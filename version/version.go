// Package version holds what a build is: its version and commit, set at link time with
//
//	-ldflags "-X github.com/promql-adapter/promql-adapter/version.Version=v1.2.3 -X github.com/promql-adapter/promql-adapter/version.Commit=abc123"
//
// (make build and make image do), and the Go toolchain that built it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set by the linker; a plain `go build` leaves the defaults.
var (
	Version = "dev"
	Commit  = ""
)

// Info is a build's identity, as --version prints it and check --json reports it.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns this binary's Info; without -X Commit it falls back to the VCS stamp Go embeds, if any.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if i.Commit == "" {
		i.Commit = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					i.Commit = s.Value
				}
			}
		}
	}
	return i
}

// String is the one line --version prints: "NAME VERSION (commit C, GO, OS/ARCH)".
func (i Info) String(name string) string {
	return fmt.Sprintf("%s %s (commit %s, %s, %s)", name, i.Version, i.Commit, i.GoVersion, i.Platform)
}
