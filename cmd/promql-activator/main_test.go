package main

import (
	"flag"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/cmd/internal/clitest"
	"github.com/promql-adapter/promql-adapter/cmd/internal/logflags/logtest"
)

var update = flag.Bool("update", false, "rewrite the golden help text")

// TestHelpAndVersion runs the built command: --help, -h and help print the grouped flags (golden file),
// the command's own groups first and the logging flags last; --version the build; an unexpected
// argument or an unknown flag fails.
func TestHelpAndVersion(t *testing.T) {
	bin := clitest.Build(t, "promql-activator")
	order := []string{"\nUsage:\n", "\nProxy:\n", "      --listen", "      --trusted-proxy-cidrs", "      --host-ownership-file",
		"\nHolding requests while a target wakes:\n", "      --max-held ", "      --retry-after", "\nKubernetes:\n", "      --kubeconfig",
		"\nAdmin endpoint and shutdown:\n", "      --admin-listen", "      --shutdown-delay", "\nOther flags:\n", "      --version ",
		"\nLogging flags:\n", "      --logging-format", "  -v, --v Level"}
	clitest.Help(t, bin, "promql-activator", *update, order)
	clitest.Version(t, bin, "promql-activator")
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
	bin := clitest.Build(t, "promql-activator")
	logtest.CheckFormats(t, bin, "starting", "--kubeconfig="+filepath.Join(t.TempDir(), "missing"))
}
