// Package registry runs a real OCI registry for tests (Debian's docker-registry, the CNCF distribution server,
// on 127.0.0.1) and pushes a release of this repository to it with `make release`, as a user does.
package registry

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BinEnv names another distribution registry binary than Debian's /usr/bin/docker-registry.
const BinEnv = "PROMQL_ADAPTER_REGISTRY_BIN"

// Start starts Debian's docker-registry (or $PROMQL_ADAPTER_REGISTRY_BIN) on a free 127.0.0.1 port with its
// storage in a temp dir, stopped at cleanup, waits for /v2/ to answer and returns host:port. It fails the
// test, never skips, when the registry is missing or does not come up.
func Start(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(BinEnv)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("docker-registry"); err != nil {
			t.Fatalf("docker-registry not found (%v): run make deps (hack/install-deps.sh installs Debian's docker-registry) or set %s", err, BinEnv)
		}
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: promql-adapter-test
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("registry log (last 4 KiB):\n%s", b[max(0, len(b)-4096):])
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s serve exited: %v\n%s", bin, waitErr, b)
		default:
		}
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s: /v2/ not answering 200 within 30 s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := exec.Command(bin, "--version").CombinedOutput()
	t.Logf("registry %s on %s: %s", bin, addr, bytes.TrimSpace(out))
	return addr
}

// MakeRelease runs `make release REGISTRY=regPath` in the repository at root for this machine's platform, with
// the given Helm, its files written to out, as a user runs it; Helm's and Docker's configuration go to a temp dir.
func MakeRelease(ctx context.Context, t testing.TB, root, helm, regPath, out string) {
	t.Helper()
	home := t.TempDir()
	env := append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config",
		"HELM_DATA_HOME="+home+"/data", "DOCKER_CONFIG="+home+"/docker")
	start := time.Now()
	mk := exec.CommandContext(ctx, "make", "-s", "-C", root, "release", "REGISTRY="+regPath, "HELM="+helm,
		"RELEASE_OUT="+out, "RELEASE_FLAGS=--platforms=linux/"+runtime.GOARCH)
	// The inner make takes no variables or flags from a make around go test (make e2e's command line).
	mk.Env = slices.DeleteFunc(env, func(e string) bool {
		return strings.HasPrefix(e, "MAKEFLAGS=") || strings.HasPrefix(e, "MFLAGS=") || strings.HasPrefix(e, "MAKELEVEL=")
	})
	b, err := mk.CombinedOutput()
	t.Logf("make release (%s):\n%s", time.Since(start).Round(time.Second), b)
	if err != nil {
		t.Fatalf("make release: %v", err)
	}
}
