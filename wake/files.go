package wake

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// ServingFiles are the serving certificate, client CA and push token, read from disk and read again
// whenever a file changes (a Secret volume's update, cert-manager's renewal), at most once per second.
// A change that does not load (a half-written pair) keeps the last good value and is logged.
type ServingFiles struct {
	CertFile, KeyFile string // serving certificate and key; empty: plain HTTP
	ClientCAFile      string // client certificates signed by it authenticate pushes
	TokenFile         string // bearer token pushes must carry

	mu      sync.Mutex
	checked time.Time
	stamps  map[string]fileStamp
	cert    *tls.Certificate
	pool    *x509.CertPool
	token   string
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Load reads every file once; an error names the file.
func (f *ServingFiles) Load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stamps = map[string]fileStamp{}
	for _, load := range []func(bool) error{f.loadCert, f.loadCA, f.loadToken} {
		if err := load(true); err != nil {
			return err
		}
	}
	f.checked = time.Now()
	return nil
}

// refresh reloads what changed since the last look; f.mu is held.
func (f *ServingFiles) refresh() {
	if time.Since(f.checked) < time.Second {
		return
	}
	f.checked = time.Now()
	for _, load := range []func(bool) error{f.loadCert, f.loadCA, f.loadToken} {
		if err := load(false); err != nil {
			klog.ErrorS(err, "reload: keeping the last good value")
		}
	}
}

// changed reports whether any of paths changed since recorded, and records them.
func (f *ServingFiles) changed(paths ...string) bool {
	diff := false
	for _, p := range paths {
		var s fileStamp
		if fi, err := os.Stat(p); err == nil {
			s = fileStamp{mod: fi.ModTime(), size: fi.Size()}
		}
		if old, ok := f.stamps[p]; !ok || old != s {
			diff = true
		}
		f.stamps[p] = s
	}
	return diff
}

func (f *ServingFiles) forget(paths ...string) {
	for _, p := range paths {
		delete(f.stamps, p) // try again next time
	}
}

func (f *ServingFiles) loadCert(first bool) error {
	if f.CertFile == "" || (!f.changed(f.CertFile, f.KeyFile) && !first) {
		return nil
	}
	c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		f.forget(f.CertFile, f.KeyFile)
		return fmt.Errorf("serving certificate %s: %w", f.CertFile, err)
	}
	if !first {
		klog.InfoS("serving certificate reloaded", "file", f.CertFile)
	}
	f.cert = &c
	return nil
}

func (f *ServingFiles) loadCA(first bool) error {
	if f.ClientCAFile == "" || (!f.changed(f.ClientCAFile) && !first) {
		return nil
	}
	pem, err := os.ReadFile(f.ClientCAFile)
	if err == nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			err = fmt.Errorf("no certificate")
		} else {
			if !first {
				klog.InfoS("client CA reloaded", "file", f.ClientCAFile)
			}
			f.pool = pool
			return nil
		}
	}
	f.forget(f.ClientCAFile)
	return fmt.Errorf("client CA %s: %w", f.ClientCAFile, err)
}

func (f *ServingFiles) loadToken(first bool) error {
	if f.TokenFile == "" || (!f.changed(f.TokenFile) && !first) {
		return nil
	}
	t, err := ReadToken(f.TokenFile)
	if err != nil {
		f.forget(f.TokenFile)
		return err
	}
	if !first {
		klog.InfoS("push token reloaded", "file", f.TokenFile)
	}
	f.token = t
	return nil
}

// Credentials returns the current push token and client CA pool.
func (f *ServingFiles) Credentials() (string, *x509.CertPool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh()
	return f.token, f.pool
}

// TLSConfig serves the current certificate and asks for client certificates signed by the current client CA.
func (f *ServingFiles) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.refresh()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*f.cert}}
			if f.pool != nil {
				c.ClientCAs, c.ClientAuth = f.pool, tls.VerifyClientCertIfGiven
			}
			return c, nil
		},
	}
}
