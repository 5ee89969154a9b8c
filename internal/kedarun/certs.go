package kedarun

import (
	"fmt"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

// Files in the certificate directory, named as KEDA reads them (its kedaorg-certs Secret mounted at /certs).
const (
	caFile   = "ca.crt"
	certFile = "tls.crt"
	keyFile  = "tls.key"
)

// writeCerts writes a fresh CA and one certificate it signs into dir: ca.crt, tls.crt, tls.key. KEDA's
// operator serves its gRPC metrics service with tls.crt and requires clients to present a certificate the
// CA signed; its metrics server presents the same one as client and serves its HTTPS API with it. The leaf
// is valid for 127.0.0.1 and localhost (both ends are on loopback) and for KEDA's in-cluster names.
func writeCerts(dir, namespace string) error {
	var names []string
	for _, svc := range []string{"keda-operator", "keda-operator-metrics-apiserver"} {
		names = append(names, svc+"."+namespace+".svc", svc+"."+namespace+".svc.cluster.local")
	}
	if _, err := localcluster.NewPeerTLS(dir, "keda-operator", names...); err != nil {
		return fmt.Errorf("kedarun: certificates: %w", err)
	}
	return nil
}
