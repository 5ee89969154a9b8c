package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags/logtest"
)

var update = flag.Bool("update", false, "rewrite the golden help text")

// TestHelpAndVersion runs the built command: --help and help print the grouped flags (golden file),
// --version the build, an unexpected argument fails.
func TestHelpAndVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "promql-wake")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	golden := "../../testdata/golden/help/promql-wake.txt"
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if *update {
			if err := os.WriteFile(golden, out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(want) {
			t.Errorf("promql-wake %v differs from %s (go test ./cmd/promql-wake -update to accept):\n%s", args, golden, out)
		}
	}
	help, _ := os.ReadFile(golden)
	order := []string{"\nUsage:\n", "\nKubernetes:\n", "      --kubeconfig", "\nLeader election:\n", "      --leader-elect", "\nPush endpoint",
		"      --token-file", "\nController:\n", "\nOther flags:\n", "      --version ", "\nLogging flags:\n", "  -v, --v Level"}
	last := -1
	for k, s := range order {
		i := strings.Index(string(help), s)
		if i <= last {
			t.Errorf("%q is missing or not after %q in the help text", s, order[max(0, k-1)])
		}
		last = i
	}
	out, err := exec.Command(bin, "--version").Output()
	want := "promql-wake dev (commit unknown, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if err != nil || string(out) != want {
		t.Errorf("--version: %v %q, want %q", err, out, want)
	}
	if err := exec.Command(bin, "serve").Run(); err == nil {
		t.Error("an unexpected argument was accepted")
	}
}

// TestLoggingFormat: --logging-format=json writes JSON log lines on stderr; an unknown format fails at
// start naming the accepted ones.
func TestLoggingFormat(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "promql-wake")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	logtest.CheckFormats(t, bin, "starting", "--kubeconfig="+filepath.Join(t.TempDir(), "missing"))
}
