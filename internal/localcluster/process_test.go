package localcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProcess: a started process runs in its own group and logs to its file; Kill reaps it; Stop of one that
// ignores SIGTERM kills it and says so; Failure carries the exit and the log's last lines.
func TestProcess(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "p.log")
	if err := os.WriteFile(log, []byte("an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := StartProcess("sleeper", "/bin/sh", []string{"-c", "echo started $MARK; exec sleep 60"}, []string{"MARK=here"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if p.PID() <= 0 {
		t.Fatalf("pid %d", p.PID())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if strings.Contains(string(b), "an earlier run\nstarted here") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log not appended with the process's output: %q", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.Exited() {
		t.Fatal("exited while sleeping")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("running after Kill")
	}
	if err := p.Failure("waiting for it"); !strings.Contains(err.Error(), "sleeper exited: signal: killed") || !strings.Contains(err.Error(), "started here") {
		t.Errorf("Failure: %v", err)
	}

	stubborn, err := StartProcess("stubborn", "/bin/sh", []string{"-c", "trap '' TERM; echo ready; while :; do sleep 1; done"}, nil, filepath.Join(dir, "s.log"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(dir, "s.log")); strings.Contains(string(b), "ready") || time.Now().After(deadline) {
			break
		}
	}
	err = stubborn.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "ignored SIGTERM") {
		t.Errorf("Stop of a process ignoring SIGTERM: %v", err)
	}
	if !stubborn.Exited() {
		t.Error("still running after Stop")
	}
}
