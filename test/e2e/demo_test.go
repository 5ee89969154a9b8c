//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoStory runs the program behind `make demo` to the end of its story (--no-wait), on a
// control plane of its own: it exits non-zero unless the HPA scaled web up and down, promql-wake
// put it to sleep and woke it, and the HPA scaled it on from there. Its output is the table alone: no
// component's log line, and promql-wake's and the HPA's events as rows.
func TestDemoStory(t *testing.T) {
	demo := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", demo, "./hack/demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the demo: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, demo, "--no-wait", "--cache", t.TempDir(), "--bin-dir", binDir)
	cmd.Dir = root
	// On timeout, stop it as Ctrl-C does, so it stops the processes it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v after %s\n%s", err, time.Since(start).Round(time.Second), out)
	}
	for _, want := range []string{"(asleep)", "$ kubectl top pods -n demo", "$ kubectl top nodes", "CPU(cores)", "the story held: up, down, to zero and back", "stopping everything",
		// Component logs go to files it names; events are rows of the table.
		"component logs: ", "in-process.log (promql-wake, promql-activator)", "s  ▶ promql-wake ScaledToZero: Deployment/web 1 → 0", "s  ▶ HPA SuccessfulRescale: New size: "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if l := regexp.MustCompile(`(?m)^[IWEF]\d{4} \d\d:\d\d:\d\d.*$`).FindString(string(out)); l != "" {
		t.Errorf("a component's log line is in the demo's output: %s", l)
	}
	t.Logf("make demo's story held, in %s:\n%s", time.Since(start).Round(time.Second), out)
}
