package localcluster

import "net"

// NewAdapterServingCert signs a fresh adapter serving certificate (new key, new serial, the SANs
// of AdapterServingCertFile) with the cluster CA and returns its certificate and key in PEM,
// e.g. to rotate a running adapter's certificate on disk. Nothing is written.
func (c *Cluster) NewAdapterServingCert() (certPEM, keyPEM []byte, err error) {
	kp, err := newLeaf(certSpec{name: adapterServingName, cn: "promql-adapter.custom-metrics.svc", server: true,
		ips: []net.IP{net.ParseIP("127.0.0.1")},
		dns: []string{"promql-adapter.custom-metrics.svc", "promql-adapter.custom-metrics.svc.cluster.local", "localhost"}}, c.pki.ca)
	if err != nil {
		return nil, nil, err
	}
	return kp.certPEM, kp.keyPEM, nil
}
