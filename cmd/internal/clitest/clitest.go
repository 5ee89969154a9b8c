// Package clitest checks a command's built binary from its package's tests: the grouped help against its golden
// file and --version.
package clitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Build builds the command of the test's package (the working directory) into a temporary file named name.
func Build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Help checks that --help, -h and help print testdata/golden/help/<name>.txt (rewritten when update is set)
// and that the golden text holds each of order's substrings, in that order.
func Help(t testing.TB, bin, name string, update bool, order []string) {
	t.Helper()
	golden := "../../testdata/golden/help/" + name + ".txt"
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if update {
			if err := os.WriteFile(golden, out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(want) {
			t.Errorf("%s %v differs from %s (go test ./cmd/%s -update to accept):\n%s", name, args, golden, name, out)
		}
	}
	help, _ := os.ReadFile(golden)
	last := -1
	for k, s := range order {
		i := strings.Index(string(help), s)
		if i <= last {
			t.Errorf("%q is missing or not after %q in the help text", s, order[max(0, k-1)])
		}
		last = i
	}
}

// Version checks that --version prints the name, the build's version and commit (dev and unknown in a test
// build), Go's version and the platform.
func Version(t testing.TB, bin, name string) {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	want := name + " dev (commit unknown, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if err != nil || string(out) != want {
		t.Errorf("--version: %v %q, want %q", err, out, want)
	}
}
