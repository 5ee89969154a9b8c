package localcluster

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfigs writes one kubeconfig with embedded certificates per client
// identity (admin, kube-controller-manager, kwok, adapter) into dir.
func (c *Cluster) writeKubeconfigs(server, dir string) error {
	for _, user := range []string{adminName, controllerManagerName, kwokName, adapterClientName} {
		kp := c.pki.leaves[user]
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.pki.caPEM}
		cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.certPEM, ClientKeyData: kp.keyPEM}
		cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
		cfg.CurrentContext = "local"
		name := user
		if user == adapterClientName {
			name = "adapter"
		}
		path := filepath.Join(dir, name+".kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			return fmt.Errorf("write kubeconfig %s: %w", path, err)
		}
		c.kubecfg[user] = path
	}
	return nil
}

// restConfig returns a client config for server authenticated as the given client certificate.
func (c *Cluster) restConfig(server, user string) *rest.Config {
	kp := c.pki.leaves[user]
	return &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: kp.certPEM,
			KeyData:  kp.keyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
}
