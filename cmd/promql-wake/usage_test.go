package main

import (
	"flag"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/promql-adapter/promql-adapter/cmd/internal/clitest"
	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags/logtest"
)

var update = flag.Bool("update", false, "rewrite the golden help text")

// TestHelpAndVersion runs the built command: --help and help print the grouped flags (golden file),
// --version the build, an unexpected argument fails.
func TestHelpAndVersion(t *testing.T) {
	bin := clitest.Build(t, "promql-wake")
	order := []string{"\nUsage:\n", "\nKubernetes:\n", "      --kubeconfig", "\nLeader election:\n", "      --leader-elect", "\nPush endpoint",
		"      --token-file", "\nController:\n", "\nOther flags:\n", "      --version ", "\nLogging flags:\n", "  -v, --v Level"}
	clitest.Help(t, bin, "promql-wake", *update, order)
	clitest.Version(t, bin, "promql-wake")
	if err := exec.Command(bin, "serve").Run(); err == nil {
		t.Error("an unexpected argument was accepted")
	}
}

// TestLoggingFormat: --logging-format=json writes JSON log lines on stderr; an unknown format fails at
// start naming the accepted ones.
func TestLoggingFormat(t *testing.T) {
	bin := clitest.Build(t, "promql-wake")
	logtest.CheckFormats(t, bin, "starting", "--kubeconfig="+filepath.Join(t.TempDir(), "missing"))
}
