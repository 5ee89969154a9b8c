//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startAdapterProc starts bin with args, its output in logPath, in a process group of its own that dies with the
// test binary. The returned stop ends it (SIGTERM, then SIGKILL of its group after grace; grace 0: SIGKILL at
// once) and is safe to call twice; it also runs at cleanup, which then prints the log's last tail bytes if the
// test failed.
func startAdapterProc(t *testing.T, bin string, args []string, logPath string, grace time.Duration, tail int) (stop func()) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	stop = func() {
		if grace > 0 {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
				return
			case <-time.After(grace):
			}
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s (last %d bytes):\n%s", logPath, tail, b[max(0, len(b)-tail):])
		}
	})
	return stop
}
