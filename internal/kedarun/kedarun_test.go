package kedarun

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCerts: the files KEDA reads verify as a server certificate for 127.0.0.1 and KEDA's Service names, and
// as a client certificate (the metrics server presents it to the operator's gRPC service, which requires one).
func TestCerts(t *testing.T) {
	dir := t.TempDir()
	if err := writeCerts(dir, "keda"); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, c := range []struct {
		name  string
		usage x509.ExtKeyUsage
	}{
		{"127.0.0.1", x509.ExtKeyUsageServerAuth},
		{"localhost", x509.ExtKeyUsageServerAuth},
		{"keda-operator.keda.svc", x509.ExtKeyUsageServerAuth},
		{"keda-operator-metrics-apiserver.keda.svc.cluster.local", x509.ExtKeyUsageServerAuth},
		{"", x509.ExtKeyUsageClientAuth},
	} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: c.name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%q %v: %v", c.name, c.usage, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "keda-operator.other.svc", Roots: roots}); err == nil {
		t.Error("valid for another namespace's Service")
	}
	st, err := os.Stat(filepath.Join(dir, keyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode: %v %v", st.Mode(), err)
	}
}

// TestBinDirFromEnv: a missing variable or binary is an error that says how to build KEDA, never a skip.
func TestBinDirFromEnv(t *testing.T) {
	t.Setenv(BinDirEnv, "")
	if _, err := BinDirFromEnv(); err == nil || !strings.Contains(err.Error(), "make keda") {
		t.Errorf("unset: %v", err)
	}
	dir := t.TempDir()
	t.Setenv(BinDirEnv, dir)
	if _, err := BinDirFromEnv(); err == nil || !strings.Contains(err.Error(), OperatorBinary) {
		t.Errorf("empty dir: %v", err)
	}
	for _, b := range []string{OperatorBinary, MetricsServerBinary} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := BinDirFromEnv(); err != nil || got != dir {
		t.Errorf("both binaries: %q %v", got, err)
	}
}

// TestRotationOn: the last --enable-cert-rotation of the operator's flags decides (kedarun's own false comes
// first, then the chart's).
func TestRotationOn(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--enable-cert-rotation=false"}, false},
		{[]string{"--enable-cert-rotation=false", "--enable-cert-rotation=true"}, true},
		{[]string{"--enable-cert-rotation=false", "--enable-cert-rotation"}, true},
		{[]string{"--enable-cert-rotation=true", "--enable-cert-rotation=false"}, false},
		{[]string{"--enable-cert-rotation=false", "--enable-apiservice-patching=true"}, false},
	} {
		if got := rotationOn(c.args); got != c.want {
			t.Errorf("rotationOn(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}
