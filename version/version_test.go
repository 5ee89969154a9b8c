package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetReportsTheLinkedValues(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "v9.8.7", "abc123"
	i := Get()
	if i.Version != "v9.8.7" || i.Commit != "abc123" || i.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", i)
	}
	got := i.String("promql-adapter")
	want := "promql-adapter v9.8.7 (commit abc123, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestGetWithoutLinkedCommitSaysUnknown(t *testing.T) {
	defer func(c string) { Commit = c }(Commit)
	Commit = ""
	if c := Get().Commit; c == "" || strings.Contains(c, " ") {
		t.Errorf("commit %q", c)
	}
}
