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

// TestHelpAndVersion runs the built command: --help, -h and help print the grouped flags (golden file),
// the command's own groups first and the logging flags last; --version the build; an unexpected
// argument or an unknown flag fails.
func TestHelpAndVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "promql-activator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	golden := "../../testdata/golden/help/promql-activator.txt"
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
			t.Errorf("promql-activator %v differs from %s (go test ./cmd/promql-activator -update to accept):\n%s", args, golden, out)
		}
	}
	help, _ := os.ReadFile(golden)
	order := []string{"\nUsage:\n", "\nProxy:\n", "      --listen", "      --trusted-proxy-cidrs", "      --host-ownership-file",
		"\nHolding requests while a target wakes:\n", "      --max-held ", "      --retry-after", "\nKubernetes:\n", "      --kubeconfig",
		"\nAdmin endpoint and shutdown:\n", "      --admin-listen", "      --shutdown-delay", "\nOther flags:\n", "      --version ",
		"\nLogging flags:\n", "      --logging-format", "  -v, --v Level"}
	last := -1
	for k, s := range order {
		i := strings.Index(string(help), s)
		if i <= last {
			t.Errorf("%q is missing or not after %q in the help text", s, order[max(0, k-1)])
		}
		last = i
	}
	out, err := exec.Command(bin, "--version").Output()
	want := "promql-activator dev (commit unknown, " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if err != nil || string(out) != want {
		t.Errorf("--version: %v %q, want %q", err, out, want)
	}
	for _, args := range [][]string{{"serve"}, {"--no-such-flag"}} {
		var stderr strings.Builder
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "promql-activator --help") {
			t.Errorf("%v: %v %q; want a failure pointing at --help", args, err, stderr.String())
		}
	}
}

// TestLoggingFormat: --logging-format=json writes JSON log lines on stderr; an unknown format fails at
// start naming the accepted ones.
func TestLoggingFormat(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "promql-activator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	logtest.CheckFormats(t, bin, "starting", "--kubeconfig="+filepath.Join(t.TempDir(), "missing"))
}
