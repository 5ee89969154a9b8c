package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Names of the PEM files that Start writes into WorkDir/pki.
const (
	caName                = "ca"
	frontProxyCAName      = "front-proxy-ca"
	apiserverName         = "apiserver"
	adminName             = "admin"
	controllerManagerName = "kube-controller-manager"
	kwokName              = "kwok"
	adapterClientName     = "adapter-client"
	frontProxyClientName  = "front-proxy-client"
	adapterServingName    = "adapter"
	saKeyFile             = "sa.key"
	saPubFile             = "sa.pub"
)

// AdapterUser is the user name (client certificate CN) of the adapter's kubeconfig; it is not in system:masters.
const AdapterUser = "custom-metrics-adapter"

// keyPair is a certificate with its private key, kept in memory and written as PEM.
type keyPair struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

// certSpec describes one leaf certificate.
type certSpec struct {
	name   string
	cn     string
	orgs   []string
	server bool // ServerAuth; a leaf without it is a client certificate
	client bool // ClientAuth as well as ServerAuth
	dns    []string
	ips    []net.IP
}

// pki holds the paths of every file generateAll wrote.
type pki struct {
	dir      string
	ca       keyPair
	frontCA  keyPair
	leaves   map[string]keyPair
	saKey    string
	saPub    string
	caPEM    []byte
	caPath   string
	fpCAPath string
}

// certPath returns the path of NAME.crt in the pki dir.
func (p *pki) certPath(name string) string { return filepath.Join(p.dir, name+".crt") }

// keyPath returns the path of NAME.key in the pki dir.
func (p *pki) keyPath(name string) string { return filepath.Join(p.dir, name+".key") }

// generatePKI creates the CAs, every leaf certificate and the service-account key pair in dir.
func generatePKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	p := &pki{dir: dir, leaves: map[string]keyPair{}}
	var err error
	if p.ca, err = newCA("kubernetes-ca"); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	if p.frontCA, err = newCA("front-proxy-ca"); err != nil {
		return nil, fmt.Errorf("create front-proxy CA: %w", err)
	}
	for name, kp := range map[string]keyPair{caName: p.ca, frontProxyCAName: p.frontCA} {
		if err := p.write(name, kp); err != nil {
			return nil, err
		}
	}
	p.caPEM = p.ca.certPEM
	p.caPath = p.certPath(caName)
	p.fpCAPath = p.certPath(frontProxyCAName)

	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	specs := []certSpec{
		{name: apiserverName, cn: "kube-apiserver", server: true,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}},
		{name: adminName, cn: "kubernetes-admin", orgs: []string{"system:masters"}},
		{name: controllerManagerName, cn: "system:kube-controller-manager"},
		{name: kwokName, cn: "kwok-controller", orgs: []string{"system:masters"}},
		{name: adapterClientName, cn: AdapterUser},
		// The aggregator verifies the adapter against <service>.<namespace>.svc, even for an ExternalName Service.
		{name: adapterServingName, cn: "promql-adapter.custom-metrics.svc", server: true, ips: loopback, dns: []string{
			"promql-adapter.custom-metrics.svc",
			"promql-adapter.custom-metrics.svc.cluster.local",
			"localhost",
		}},
	}
	for _, s := range specs {
		if err := p.leaf(s, p.ca); err != nil {
			return nil, err
		}
	}
	if err := p.leaf(certSpec{name: frontProxyClientName, cn: "front-proxy-client"}, p.frontCA); err != nil {
		return nil, err
	}
	if err := p.serviceAccountKeys(); err != nil {
		return nil, err
	}
	return p, nil
}

// leaf signs a leaf certificate for s with issuer and writes it.
func (p *pki) leaf(s certSpec, issuer keyPair) error {
	kp, err := newLeaf(s, issuer)
	if err != nil {
		return fmt.Errorf("create certificate %s: %w", s.name, err)
	}
	p.leaves[s.name] = kp
	return p.write(s.name, kp)
}

// write stores kp as NAME.crt and NAME.key.
func (p *pki) write(name string, kp keyPair) error {
	if err := os.WriteFile(p.certPath(name), kp.certPEM, 0o644); err != nil {
		return fmt.Errorf("write %s certificate: %w", name, err)
	}
	if err := os.WriteFile(p.keyPath(name), kp.keyPEM, 0o600); err != nil {
		return fmt.Errorf("write %s key: %w", name, err)
	}
	return nil
}

// serviceAccountKeys writes sa.key and sa.pub used to sign and verify service-account tokens.
func (p *pki) serviceAccountKeys() error {
	key, keyPEM, err := newKey()
	if err != nil {
		return fmt.Errorf("create service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("marshal service-account public key: %w", err)
	}
	p.saKey = filepath.Join(p.dir, saKeyFile)
	p.saPub = filepath.Join(p.dir, saPubFile)
	if err := os.WriteFile(p.saKey, keyPEM, 0o600); err != nil {
		return fmt.Errorf("write service-account key: %w", err)
	}
	if err := os.WriteFile(p.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return fmt.Errorf("write service-account public key: %w", err)
	}
	return nil
}

// newKey returns a fresh ECDSA P-256 key and its SEC1 PEM encoding.
func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// serial returns a random 128-bit certificate serial number.
func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return n, nil
}

// validity returns the NotBefore/NotAfter window used for every certificate (10 years).
func validity() (time.Time, time.Time) {
	now := time.Now()
	return now.Add(-time.Hour), now.Add(10 * 365 * 24 * time.Hour)
}

// newCA creates a self-signed CA certificate.
func newCA(cn string) (keyPair, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return keyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return keyPair{}, err
	}
	nb, na := validity()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             nb,
		NotAfter:              na,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return sign(tmpl, tmpl, key, key, keyPEM)
}

// newLeaf creates a leaf certificate for s signed by issuer.
func newLeaf(s certSpec, issuer keyPair) (keyPair, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return keyPair{}, err
	}
	sn, err := serial()
	if err != nil {
		return keyPair{}, err
	}
	nb, na := validity()
	var eku []x509.ExtKeyUsage
	if s.server {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if s.client || !s.server {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:             nb,
		NotAfter:              na,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		DNSNames:              s.dns,
		IPAddresses:           s.ips,
	}
	return sign(tmpl, issuer.cert, key, issuer.key, keyPEM)
}

// sign creates the certificate tmpl for key's public half, signed by parentKey.
func sign(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, parentKey crypto.Signer, keyPEM []byte) (keyPair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return keyPair{}, fmt.Errorf("sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyPair{}, fmt.Errorf("parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return keyPair{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:     key,
		keyPEM:  keyPEM,
	}, nil
}

// LoopbackTLS is a serving certificate for 127.0.0.1 and localhost and the CA that signed it.
type LoopbackTLS struct {
	CAFile, CertFile, KeyFile string // PEM files
}

// NewLoopbackTLS writes a fresh CA and a serving certificate for 127.0.0.1 and localhost into dir,
// for test servers other than the control plane (a Prometheus behind TLS, say).
func NewLoopbackTLS(dir, name string) (LoopbackTLS, error) {
	return writeTLS(dir, name+"-ca", certSpec{name: name, cn: name, server: true,
		dns: []string{"localhost"}, ips: []net.IP{net.ParseIP("127.0.0.1")}})
}

// NewPeerTLS writes into dir a fresh CA (ca.crt) and one certificate it signs (tls.crt, tls.key) that is valid
// both to serve, for 127.0.0.1, localhost and dnsNames, and as a client certificate: for test servers that talk
// mutual TLS to each other on loopback with one certificate, as KEDA's operator and metrics server do.
func NewPeerTLS(dir, cn string, dnsNames ...string) (LoopbackTLS, error) {
	return writeTLS(dir, "ca", certSpec{name: "tls", cn: cn, server: true, client: true,
		dns: append([]string{"localhost"}, dnsNames...), ips: []net.IP{net.ParseIP("127.0.0.1")}})
}

// writeTLS writes a fresh CA as caName.crt/.key into dir and the leaf spec it signs as spec.name.crt/.key.
func writeTLS(dir, caName string, spec certSpec) (LoopbackTLS, error) {
	p := &pki{dir: dir, leaves: map[string]keyPair{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return LoopbackTLS{}, fmt.Errorf("create tls dir: %w", err)
	}
	ca, err := newCA(spec.cn + "-ca")
	if err != nil {
		return LoopbackTLS{}, err
	}
	if err := p.write(caName, ca); err != nil {
		return LoopbackTLS{}, err
	}
	if err := p.leaf(spec, ca); err != nil {
		return LoopbackTLS{}, err
	}
	return LoopbackTLS{CAFile: p.certPath(caName), CertFile: p.certPath(spec.name), KeyFile: p.keyPath(spec.name)}, nil
}
