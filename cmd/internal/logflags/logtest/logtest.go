// Package logtest checks a built command's --logging-format behaviour for the commands' tests.
package logtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CheckFormats runs bin with --logging-format=json and args, which must make it log at least one info
// line with message wantMsg and then exit on its own: every line on stderr is a JSON object with "ts" and
// "msg", and the info line carries "v". Then --logging-format=xml must fail with an error naming the
// accepted formats json and text.
func CheckFormats(t *testing.T, bin, wantMsg string, args ...string) {
	t.Helper()
	stderr, code := run(t, bin, append([]string{"--logging-format=json", "-v=2"}, args...)...)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	found := false
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("--logging-format=json: stderr line is no JSON object (%v): %s", err, l)
			continue
		}
		if _, ok := m["ts"].(float64); !ok {
			t.Errorf(`line lacks a numeric "ts": %s`, l)
		}
		if _, ok := m["msg"].(string); !ok {
			t.Errorf(`line lacks "msg": %s`, l)
		}
		if m["msg"] == wantMsg {
			found = true
			if _, ok := m["v"].(float64); !ok {
				t.Errorf(`info line lacks "v": %s`, l)
			}
		}
	}
	if !found {
		t.Errorf("--logging-format=json (exit %d): no line with msg %q on stderr:\n%s", code, wantMsg, stderr)
	}

	stderr, code = run(t, bin, append([]string{"--logging-format=xml"}, args...)...)
	if code == 0 {
		t.Errorf("--logging-format=xml exited 0")
	}
	for _, s := range []string{"xml", "json", "text"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("--logging-format=xml: the error does not name %q:\n%s", s, stderr)
		}
	}
	if strings.Contains(stderr, wantMsg) {
		t.Errorf("--logging-format=xml: the command started anyway:\n%s", stderr)
	}
}

// run runs bin with a bounded deadline and returns its stderr and exit code.
func run(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(30*time.Second, func() {
		t.Errorf("%s %v did not exit within 30s", bin, args)
		_ = cmd.Process.Kill()
	})
	err := cmd.Wait()
	timer.Stop()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return stderr.String(), cmd.ProcessState.ExitCode()
}
