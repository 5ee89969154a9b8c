package stack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Replica is one more promql-adapter process, e.g. one of several behind a Service.
type Replica struct {
	Name     string
	Port     int    // its secure port on 127.0.0.1
	CertFile string // its serving certificate (a copy: rotate it without touching other replicas)
	KeyFile  string
	cmd      *exec.Cmd
	done     chan struct{}
}

// StartReplica starts a promql-adapter process with the stack's flags on a new loopback port and
// its own copy of the serving certificate; extraArgs come last, so they override. Stop (or Stack.Stop)
// ends it.
func (s *Stack) StartReplica(ctx context.Context, name string, extraArgs ...string) (*Replica, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.opts.WorkDir, "replicas", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Replica{Name: name, Port: port, CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), done: make(chan struct{})}
	for src, dst := range map[string]string{s.Cluster.AdapterServingCertFile(): r.CertFile, s.Cluster.AdapterServingKeyFile(): r.KeyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return nil, err
		}
	}
	logf, err := os.OpenFile(filepath.Join(s.opts.WorkDir, "logs", "promql-adapter-"+name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--config=" + s.rulesFile,
		"--prometheus-url=" + s.Prom.URL(),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + r.CertFile,
		"--tls-private-key-file=" + r.KeyFile,
		"--lister-kubeconfig=" + s.adapterKC,
		"--authentication-kubeconfig=" + s.adapterKC,
		"--authorization-kubeconfig=" + s.adapterKC,
		"--series-relist-interval=5s",
		"--v=2",
	}, extraArgs...)
	r.cmd = exec.Command(s.adapterBin, args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start promql-adapter %s: %w", name, err)
	}
	go func() { _ = r.cmd.Wait(); logf.Close(); close(r.done) }()
	s.mu.Lock()
	s.replicas = append(s.replicas, r)
	s.mu.Unlock()
	return r, nil
}

// PID is the replica's process id.
func (r *Replica) PID() int { return r.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (r *Replica) Exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Ready is a readiness probe: GET /readyz on the replica's port answers 200.
func (r *Replica) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/readyz", r.Port), nil)
	if err != nil {
		return err
	}
	// A probe, as kubelet's: TLS without verification, no credentials, no keep-alive.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} //nolint:gosec // a readiness probe
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}

// Kill sends SIGKILL (a crash) and waits for the process to exit.
func (r *Replica) Kill() error {
	if r.Exited() {
		return nil
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-r.done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("promql-adapter replica " + r.Name + " did not exit after SIGKILL")
	}
}
