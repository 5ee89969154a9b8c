//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

// TestE2EWakeRotatesServingFiles (fault suite 5, promql-wake): the promql-wake binary serves HTTPS with
// a certificate and a push token from files; both are replaced on disk, as a Secret volume update
// does, and the new ones are used without a restart: the new certificate is presented, the new token
// is accepted and the old one refused.
func TestE2EWakeRotatesServingFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bin := filepath.Join(dir, "promql-wake")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/promql-wake")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build promql-wake: %v\n%s", err, out)
	}
	one, err := localcluster.NewLoopbackTLS(filepath.Join(dir, "one"), "wake-one")
	if err != nil {
		t.Fatal(err)
	}
	two, err := localcluster.NewLoopbackTLS(filepath.Join(dir, "two"), "wake-two")
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live")
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	install := func(tl localcluster.LoopbackTLS, token string) {
		t.Helper()
		for src, dst := range map[string]string{tl.CertFile: "tls.crt", tl.KeyFile: "tls.key"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			// Write aside and rename, as the kubelet swaps a Secret volume's files.
			if err := os.WriteFile(filepath.Join(live, dst+".tmp"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(live, dst+".tmp"), filepath.Join(live, dst)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(live, "token"), []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	install(one, "token-one")

	kc, err := st.ServiceAccountKubeconfig(ctx, stack.AdapterNamespace, stack.WakeServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(dir, "promql-wake.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--kubeconfig="+kc, "--listen="+addr, "--id=wake-rotate", "--lease-name=promql-wake-rotate",
		"--tls-cert-file="+filepath.Join(live, "tls.crt"), "--tls-private-key-file="+filepath.Join(live, "tls.key"),
		"--token-file="+filepath.Join(live, "token"), "--v=2")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("promql-wake exited: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Error("promql-wake did not stop within 30 s of SIGTERM")
		}
	}()

	client := func(tl localcluster.LoopbackTLS) *http.Client {
		pem, err := os.ReadFile(tl.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	}
	push := func(c *http.Client, token string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/wake/"+ns+"/hpa/no-such-hpa", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	// Authenticated pushes for an HPA that does not exist get 404; unauthenticated ones 401.
	eventually(t, 30*time.Second, "promql-wake serves certificate one and takes token one", func() (bool, string) {
		code, err := push(client(one), "token-one")
		return code == http.StatusNotFound, fmt.Sprintf("%d %v", code, err)
	})

	install(two, "token-two")
	rotated := time.Now()
	eventually(t, 15*time.Second, "certificate two served and token two taken, without a restart", func() (bool, string) {
		code, err := push(client(two), "token-two")
		return code == http.StatusNotFound, fmt.Sprintf("%d %v", code, err)
	})
	t.Logf("rotation used %s after the files changed", time.Since(rotated).Round(100*time.Millisecond))
	if code, err := push(client(two), "token-one"); code != http.StatusUnauthorized {
		t.Errorf("the old token after rotation: %d %v, want 401", code, err)
	}
	if _, err := push(client(one), "token-two"); err == nil {
		t.Error("certificate one still served after rotation")
	}
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("promql-wake exited during the rotation: %v", err)
	default:
	}
}
