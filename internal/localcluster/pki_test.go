package localcluster

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
)

// TestGeneratePKI checks the chains, usages and SANs of the generated certificates.
func TestGeneratePKI(t *testing.T) {
	p, err := generatePKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	fpRoots := x509.NewCertPool()
	fpRoots.AddCert(p.frontCA.cert)

	verify := func(name string, pool *x509.CertPool, dns string, usage x509.ExtKeyUsage) {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(p.certPath(name), p.keyPath(name))
		if err != nil {
			t.Fatalf("%s: load key pair: %v", name, err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: dns, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s: verify: %v", name, err)
		}
	}
	verify(apiserverName, roots, "kubernetes.default.svc", x509.ExtKeyUsageServerAuth)
	verify(apiserverName, roots, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	for _, dns := range []string{"promql-adapter.custom-metrics.svc", "promql-adapter.custom-metrics.svc.cluster.local", "localhost", "127.0.0.1"} {
		verify(adapterServingName, roots, dns, x509.ExtKeyUsageServerAuth)
	}
	for _, n := range []string{adminName, controllerManagerName, kwokName, adapterClientName} {
		verify(n, roots, "", x509.ExtKeyUsageClientAuth)
	}
	verify(frontProxyClientName, fpRoots, "", x509.ExtKeyUsageClientAuth)
	if _, err := p.leaves[frontProxyClientName].cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("front-proxy-client must not chain to the cluster CA")
	}

	if got := p.leaves[adminName].cert.Subject.Organization; len(got) != 1 || got[0] != "system:masters" {
		t.Errorf("admin organizations = %v", got)
	}
	if a := p.leaves[adapterClientName].cert.Subject; a.CommonName != AdapterUser || len(a.Organization) != 0 {
		t.Errorf("adapter client subject = %v", a)
	}
	if a := p.leaves[controllerManagerName].cert.Subject.CommonName; a != "system:kube-controller-manager" {
		t.Errorf("kcm CN = %q", a)
	}
	for _, f := range []string{p.saKey, p.saPub} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
}

// TestBinDirFromEnv checks that missing binaries are an error that names make cluster-bins.
func TestBinDirFromEnv(t *testing.T) {
	t.Setenv(BinDirEnv, "")
	if _, err := BinDirFromEnv(); err == nil || !strings.Contains(err.Error(), "make cluster-bins") {
		t.Errorf("unset: err = %v", err)
	}
	t.Setenv(BinDirEnv, t.TempDir())
	if _, err := BinDirFromEnv(); err == nil || !strings.Contains(err.Error(), "make cluster-bins") || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("empty dir: err = %v", err)
	}
}

func TestNewAdapterServingCert(t *testing.T) {
	p, err := generatePKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{pki: p}
	certPEM, keyPEM, err := c.NewAdapterServingCert()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("key pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "promql-adapter.custom-metrics.svc"}); err != nil {
		t.Errorf("rotated certificate does not verify for the Service name: %v", err)
	}
	if leaf.SerialNumber.Cmp(p.leaves[adapterServingName].cert.SerialNumber) == 0 {
		t.Error("rotated certificate has the serial of the first one")
	}
}
