package wake

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

// TestServingFilesReload: a rotated certificate, client CA and token are used without a restart; a
// broken rotation (a key that does not match) keeps the last good certificate.
func TestServingFilesReload(t *testing.T) {
	dir := t.TempDir()
	one, err := localcluster.NewLoopbackTLS(filepath.Join(dir, "one"), "one")
	if err != nil {
		t.Fatal(err)
	}
	two, err := localcluster.NewLoopbackTLS(filepath.Join(dir, "two"), "two")
	if err != nil {
		t.Fatal(err)
	}
	live := ServingFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), ClientCAFile: filepath.Join(dir, "ca.crt"), TokenFile: filepath.Join(dir, "token")}
	put := func(src, dst string, mtime time.Time) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dst, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	put(one.CertFile, live.CertFile, t0)
	put(one.KeyFile, live.KeyFile, t0)
	put(one.CAFile, live.ClientCAFile, t0)
	if err := os.WriteFile(live.TokenFile, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := live.Load(); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", live.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	servedBy := func(ca string) error {
		pem, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := servedBy(one.CAFile); err != nil {
		t.Fatalf("first certificate: %v", err)
	}
	if tok, _ := live.Credentials(); tok != "first" {
		t.Fatalf("token %q", tok)
	}

	// Rotate everything; the next look after a second sees it.
	t1 := time.Now()
	put(two.CertFile, live.CertFile, t1)
	put(two.KeyFile, live.KeyFile, t1)
	put(two.CAFile, live.ClientCAFile, t1)
	if err := os.WriteFile(live.TokenFile, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the rotated certificate served", func() bool { return servedBy(two.CAFile) == nil })
	if tok, pool := live.Credentials(); tok != "second" || pool.Equal(x509.NewCertPool()) {
		t.Errorf("after rotation: token %q", tok)
	}

	// A half-done rotation (certificate one, key two) keeps serving two.
	t2 := time.Now().Add(time.Hour)
	put(one.CertFile, live.CertFile, t2)
	time.Sleep(1100 * time.Millisecond)
	if err := servedBy(two.CAFile); err != nil {
		t.Errorf("a broken rotation replaced the last good certificate: %v", err)
	}
}
