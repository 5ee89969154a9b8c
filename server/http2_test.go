package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDisableHTTP2 starts the adapter's secure server on 127.0.0.1 with --trust-loopback and checks
// which protocol a client offering both h2 and http/1.1 (ALPN) gets: h2 by default, HTTP/1.1 only
// with prometheus-adapter's --disable-http2 or k8s.io/apiserver's --disable-http2-serving.
func TestDisableHTTP2(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("metrics:\n- name: up\n  resource: pods\n  query: sum by (namespace, pod) (up)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args      []string
		wantALPN  string // the TLS connection's negotiated protocol
		wantProto string // the response's protocol
	}{
		{"default serves h2", nil, "h2", "HTTP/2.0"},
		{"--disable-http2 (prometheus-adapter's name) serves HTTP/1.1 only", []string{"--disable-http2"}, "http/1.1", "HTTP/1.1"},
		{"--disable-http2=false serves h2", []string{"--disable-http2=false"}, "h2", "HTTP/2.0"},
		{"--disable-http2-serving (k8s.io/apiserver's name) serves HTTP/1.1 only", []string{"--disable-http2-serving"}, "http/1.1", "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parsePA(t, append([]string{"--config=" + rules, "--config-reload-interval=0", "--prometheus-url=http://127.0.0.1:1"}, tc.args...)...)
			o.Registerer = prometheus.NewRegistry()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			o.Server.SecureServing.Listener = ln
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- Run(ctx, o) }()
			defer func() {
				cancel()
				select {
				case err := <-errc:
					if err != nil {
						t.Errorf("adapter stopped with: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Error("adapter did not stop within 10s")
				}
			}()

			// The server's certificate is self-signed; the protocol, not the identity, is under test.
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}},
				ForceAttemptHTTP2: true,
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			url := "https://" + ln.Addr().String() + "/livez"
			deadline := time.Now().Add(30 * time.Second)
			var resp *http.Response
			for {
				select {
				case err := <-errc:
					t.Fatalf("adapter stopped before serving: %v", err)
				default:
				}
				if resp, err = client.Get(url); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
					err = errors.New(resp.Status)
				}
				if time.Now().After(deadline) {
					t.Fatalf("adapter not live within 30s: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if resp.TLS == nil {
				t.Fatal("no TLS connection state")
			}
			if got := resp.TLS.NegotiatedProtocol; got != tc.wantALPN {
				t.Errorf("negotiated protocol %q, want %q", got, tc.wantALPN)
			}
			if resp.Proto != tc.wantProto {
				t.Errorf("response protocol %q, want %q", resp.Proto, tc.wantProto)
			}

			// A client that offers h2 alone gets it, or, with HTTP/2 off, no connection or not h2.
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			var got string
			if err == nil {
				got = conn.ConnectionState().NegotiatedProtocol
				conn.Close()
			}
			if tc.wantALPN == "h2" && got != "h2" {
				t.Errorf("h2-only client: protocol %q, error %v; want h2", got, err)
			}
			if tc.wantALPN != "h2" && got == "h2" {
				t.Error("h2-only client negotiated h2 with HTTP/2 disabled")
			}
		})
	}
}
