package apiservice

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Keys of the shared Secret.
const (
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
	KeyTLSCert = corev1.TLSCertKey
	KeyTLSKey  = corev1.TLSPrivateKeyKey
)

// Validity of what CertSecret makes; the serving certificate is renewed once a third of its validity is left.
const (
	CAValidity      = 10 * 365 * 24 * time.Hour
	ServingValidity = 365 * 24 * time.Hour
)

// CertSecret keeps the adapter's CA and serving certificate in one Secret that every replica reads: the leader
// makes them when the Secret is absent (Ensure), reuses them after restarts and renews the serving certificate
// with the same CA before it expires; every replica serves the Secret's certificate (a
// dynamiccertificates.CertKeyContentProvider, reloaded on change) and the controller asserts its CA as caBundle.
type CertSecret struct {
	SecretNamespace, SecretName string
	DNSNames                    []string
	Client                      kubernetes.Interface
	// Fallback is served until the Secret is read (the generic server's self-signed certificate).
	Fallback dynamiccertificates.CertKeyContentProvider
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time

	mu        sync.Mutex
	ca, cert  []byte
	key       []byte
	listeners []dynamiccertificates.Listener
	synced    chan struct{}
	once      sync.Once
}

var _ dynamiccertificates.CertKeyContentProvider = (*CertSecret)(nil)

func (s *CertSecret) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *CertSecret) syncedCh() chan struct{} {
	s.once.Do(func() { s.synced = make(chan struct{}) })
	return s.synced
}

// Name identifies the provider in the generic server's logs.
func (s *CertSecret) Name() string { return "secret/" + s.SecretNamespace + "/" + s.SecretName }

// AddListener registers a listener told of every change of the certificate.
func (s *CertSecret) AddListener(l dynamiccertificates.Listener) {
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
}

// CurrentCertKeyContent is the Secret's certificate and key, or the fallback's until the Secret is read.
func (s *CertSecret) CurrentCertKeyContent() ([]byte, []byte) {
	s.mu.Lock()
	cert, key := s.cert, s.key
	s.mu.Unlock()
	if len(cert) == 0 && s.Fallback != nil {
		return s.Fallback.CurrentCertKeyContent()
	}
	return cert, key
}

// CABundle is the Secret's CA certificate (PEM), or an error naming the Secret until it is read.
func (s *CertSecret) CABundle() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ca) == 0 {
		return nil, fmt.Errorf("the CA of Secret %s/%s is not read yet", s.SecretNamespace, s.SecretName)
	}
	return s.ca, nil
}

// set takes a Secret's content when it is complete and valid, and tells the listeners.
func (s *CertSecret) set(sec *corev1.Secret) {
	if sec == nil {
		return
	}
	ca, cert, key := sec.Data[KeyCACert], sec.Data[KeyTLSCert], sec.Data[KeyTLSKey]
	if _, err := tls.X509KeyPair(cert, key); err != nil || len(ca) == 0 {
		klog.InfoS("the shared TLS Secret is incomplete or invalid; keeping the certificate served so far", "secret", s.Name(), "err", err)
		return
	}
	s.mu.Lock()
	changed := !bytes.Equal(s.cert, cert) || !bytes.Equal(s.key, key) || !bytes.Equal(s.ca, ca)
	s.ca, s.cert, s.key = ca, cert, key
	ls := slices.Clone(s.listeners)
	s.mu.Unlock()
	select {
	case <-s.syncedCh():
	default:
		close(s.syncedCh())
	}
	if changed {
		klog.InfoS("serving the certificate of the shared TLS Secret", "secret", s.Name())
		for _, l := range ls {
			l.Enqueue()
		}
	}
}

// SecretCheckName is the /readyz check that fails until the Secret's certificate is served.
const SecretCheckName = "tls-secret"

// Check is the /readyz check: nil once a valid certificate was read from the Secret.
func (s *CertSecret) Check(*http.Request) error {
	select {
	case <-s.syncedCh():
		return nil
	default:
		return fmt.Errorf("no valid certificate read from Secret %s/%s yet (its leader makes it)", s.SecretNamespace, s.SecretName)
	}
}

// Synced is closed once a valid certificate was read from the Secret.
func (s *CertSecret) Synced() <-chan struct{} { return s.syncedCh() }

// Run watches the Secret (by name) until ctx ends and serves each valid version of it.
func (s *CertSecret) Run(ctx context.Context) {
	sel := fields.OneTermEqualSelector("metadata.name", s.SecretName).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return s.Client.CoreV1().Secrets(s.SecretNamespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return s.Client.CoreV1().Secrets(s.SecretNamespace).Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, s.Client), &corev1.Secret{}, 0, cache.Indexers{})
	on := func(obj any) {
		if sec, ok := obj.(*corev1.Secret); ok && sec.Name == s.SecretName {
			s.set(sec)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: on, UpdateFunc: func(_, o any) { on(o) }})
	inf.RunWithContext(ctx)
}

// Ensure makes the Secret when it is absent, and renews its serving certificate with the same CA when a third of
// its validity or less is left, or when it lacks one of DNSNames. It returns what it did ("" for nothing).
func (s *CertSecret) Ensure(ctx context.Context) (string, error) {
	secrets := s.Client.CoreV1().Secrets(s.SecretNamespace)
	cur, err := secrets.Get(ctx, s.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		data, err := s.generate(nil, nil)
		if err != nil {
			return "", err
		}
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.SecretName, Namespace: s.SecretNamespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": FieldManager}},
			Type: corev1.SecretTypeOpaque, Data: data,
		}
		created, err := secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			return "", nil // another replica made it first; the watch brings it
		}
		if err != nil {
			return "", fmt.Errorf("create the TLS Secret %s/%s: %w", s.SecretNamespace, s.SecretName, err)
		}
		s.set(created)
		return "created a CA and a serving certificate", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the TLS Secret %s/%s: %w", s.SecretNamespace, s.SecretName, err)
	}
	why := s.renewal(cur.Data)
	if why == "" {
		s.set(cur)
		return "", nil
	}
	caCert, caKey, err := parseCA(cur.Data)
	var data map[string][]byte
	if err != nil {
		why += "; " + err.Error() + ": a new CA too"
		data, err = s.generate(nil, nil)
	} else {
		data, err = s.generate(caCert, caKey)
	}
	if err != nil {
		return "", err
	}
	up := cur.DeepCopy()
	up.Data = data
	updated, err := secrets.Update(ctx, up, metav1.UpdateOptions{FieldManager: FieldManager})
	if err != nil {
		return "", fmt.Errorf("renew the TLS Secret %s/%s: %w", s.SecretNamespace, s.SecretName, err)
	}
	s.set(updated)
	return "renewed the serving certificate: " + why, nil
}

// renewal says why the Secret's serving certificate must be made again ("" when it need not).
func (s *CertSecret) renewal(data map[string][]byte) string {
	if _, _, err := parseCA(data); err != nil {
		return err.Error()
	}
	block, _ := pem.Decode(data[KeyTLSCert])
	if block == nil {
		return "no serving certificate"
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "unreadable serving certificate"
	}
	if _, err := tls.X509KeyPair(data[KeyTLSCert], data[KeyTLSKey]); err != nil {
		return "the key does not match the certificate"
	}
	for _, n := range s.DNSNames {
		if !slices.Contains(c.DNSNames, n) {
			return "the certificate lacks the name " + n
		}
	}
	if left := c.NotAfter.Sub(s.now()); left < c.NotAfter.Sub(c.NotBefore)/3 {
		return fmt.Sprintf("it expires at %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// parseCA reads the CA certificate and key from the Secret's data.
func parseCA(data map[string][]byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(data[KeyCACert])
	kb, _ := pem.Decode(data[KeyCAKey])
	if cb == nil || kb == nil {
		return nil, nil, errors.New("no CA certificate and key")
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("unreadable CA certificate: %w", err)
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("unreadable CA key: %w", err)
	}
	return c, k, nil
}

// generate makes a serving certificate for DNSNames signed by the CA given, or by a new CA when caCert is nil.
func (s *CertSecret) generate(caCert *x509.Certificate, caKey *ecdsa.PrivateKey) (map[string][]byte, error) {
	now := s.now()
	if caCert == nil {
		var err error
		if caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: s.SecretName + "-ca@" + now.UTC().Format("20060102T150405Z")},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(CAValidity),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		if err != nil {
			return nil, fmt.Errorf("make a CA: %w", err)
		}
		if caCert, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(ServingValidity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: s.DNSNames[0]}, DNSNames: s.DNSNames,
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("make a serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		KeyCACert:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
		KeyCAKey:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
		KeyTLSCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyTLSKey:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
