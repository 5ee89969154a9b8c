package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// WakeProcess is a promql-wake replica run as its own process (cmd/promql-wake), so its memory
// and connections can be measured apart from the test.
type WakeProcess struct {
	URL   string // http://127.0.0.1:port
	Token string
	cmd   *exec.Cmd
	done  chan struct{}
}

// StartWakeProcess builds cmd/promql-wake and runs it with the ServiceAccount of
// deploy/wake-rbac.yaml on a loopback port, with extraArgs after its own; Stop ends it.
func (s *Stack) StartWakeProcess(ctx context.Context, id string, extraArgs ...string) (*WakeProcess, error) {
	bin := filepath.Join(s.opts.WorkDir, "promql-wake")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/promql-wake")
	build.Dir = s.opts.RepoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build promql-wake: %v\n%s", err, out)
	}
	kc, err := s.ServiceAccountKubeconfig(ctx, AdapterNamespace, WakeServiceAccount)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	w := &WakeProcess{Token: hex.EncodeToString(b), done: make(chan struct{})}
	tokenFile := filepath.Join(s.opts.WorkDir, "wake-"+id+".token")
	if err := os.WriteFile(tokenFile, []byte(w.Token), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	w.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.OpenFile(filepath.Join(s.opts.WorkDir, "logs", "promql-wake-"+id+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--kubeconfig=" + kc, "--id=" + id, "--listen=127.0.0.1:" + strconv.Itoa(port), "--token-file=" + tokenFile, "--v=1"}, extraArgs...)
	w.cmd = exec.Command(bin, args...)
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start promql-wake: %w", err)
	}
	go func() { _ = w.cmd.Wait(); logf.Close(); close(w.done) }()
	return w, nil
}

// PID is the process id.
func (w *WakeProcess) PID() int { return w.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to 15 s, then SIGKILL.
func (w *WakeProcess) Stop() error {
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-w.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
		return fmt.Errorf("promql-wake ignored SIGTERM for 15s and was killed")
	}
}

// Kill ends the process at once with SIGKILL, as a crash would: it neither releases its Lease nor
// cleans up after itself.
func (w *WakeProcess) Kill() {
	_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	<-w.done
}
