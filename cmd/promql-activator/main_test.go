package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags/logtest"
)

var update = flag.Bool("update", false, "rewrite the golden help text")

// TestHelp runs the built command with -h: the flags and their help are the golden file's.
func TestHelp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "promql-activator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	got := strings.Replace(string(out), bin, "promql-activator", 1)
	golden := "../../testdata/golden/help/promql-activator.txt"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("promql-activator -h differs from %s (go test ./cmd/promql-activator -update to accept):\n%s", golden, got)
	}
	for _, f := range []string{"-host-ownership-file", "-trusted-proxy-cidrs"} {
		if !strings.Contains(got, f) {
			t.Errorf("-h lacks %s", f)
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
