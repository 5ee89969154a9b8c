package integration

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/promql-adapter/promql-adapter/server"
)

// TestDisableHTTP2 starts the adapter from its command line (--trust-loopback, on 127.0.0.1) and
// checks which protocol a client offering both h2 and http/1.1 in TLS ALPN gets: h2 by default,
// HTTP/1.1 only with prometheus-adapter's --disable-http2 or k8s.io/apiserver's --disable-http2-serving.
func TestDisableHTTP2(t *testing.T) {
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
			opts := server.NewOptions()
			fs := pflag.NewFlagSet("promql-adapter", pflag.ContinueOnError)
			opts.AddFlags(fs)
			args := append([]string{"--trust-loopback", "--config=" + integrationRules, "--prometheus-url=" + env.prom.URL(), "--config-reload-interval=0"}, tc.args...)
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			base := startTestAdapter(t, opts)

			// The certificate is self-signed; the protocol, not the identity, is under test.
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}},
				ForceAttemptHTTP2: true,
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(base + "/livez")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("/livez: %s", resp.Status)
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

			// A client offering h2 alone gets it, or, with HTTP/2 off, no connection or not h2.
			d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}}
			var got string
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(base, "https://"))
			if err == nil {
				got = conn.(*tls.Conn).ConnectionState().NegotiatedProtocol
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
