package localcluster

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
)

// hostPort returns 127.0.0.1:port.
func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// etcdArgs returns the flags of a single-member etcd with plain http on loopback.
func etcdArgs(dataDir string, p Ports) []string {
	client := "http://" + hostPort(p.EtcdClient)
	peer := "http://" + hostPort(p.EtcdPeer)
	return []string{
		"--name=etcd0",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=etcd0=" + peer,
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=2147483648",
		"--log-level=warn",
	}
}

// apiserverArgs returns kube-apiserver's flags, including the front-proxy
// (requestheader) set-up that API aggregation needs.
func (c *Cluster) apiserverArgs() []string {
	k := c.pki
	return []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.APIServer),
		"--endpoint-reconciler-type=none", // a loopback advertise address is invalid in the kubernetes Endpoints
		"--etcd-servers=http://" + hostPort(c.ports.EtcdClient),
		"--tls-cert-file=" + k.certPath(apiserverName),
		"--tls-private-key-file=" + k.keyPath(apiserverName),
		"--client-ca-file=" + k.caPath,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + k.saPub,
		"--service-account-signing-key-file=" + k.saKey,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--requestheader-client-ca-file=" + k.fpCAPath,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + k.certPath(frontProxyClientName),
		"--proxy-client-key-file=" + k.keyPath(frontProxyClientName),
		"--enable-aggregator-routing=false", // ExternalName Services resolve to spec.externalName
		"--cert-dir=" + filepath.Join(c.workDir, "pki"),
		"--profiling=false",
		"--v=1",
	}
}

// controllerManagerArgs returns kube-controller-manager's flags.
func (c *Cluster) controllerManagerArgs(o Options) []string {
	kc := c.kubecfg[controllerManagerName]
	return []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.ControllerManager),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + c.pki.saKey,
		"--root-ca-file=" + c.pki.caPath,
		"--controllers=*",
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		fmt.Sprintf("--horizontal-pod-autoscaler-sync-period=%s", o.HPASyncPeriod),
		fmt.Sprintf("--horizontal-pod-autoscaler-downscale-stabilization=%s", o.HPADownscaleStabilization),
		"--profiling=false",
		"--v=1",
	}
}

// kwokArgs returns kwok's flags; the node lease keeps node-lifecycle from marking pods NotReady.
func (c *Cluster) kwokArgs(stagesFile, podCIDR string) []string {
	return []string{
		"--kubeconfig=" + c.kubecfg[kwokName],
		"--config=" + stagesFile,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-lease-duration-seconds=40",
		"--node-ip=127.0.0.1",
		"--node-port=" + strconv.Itoa(c.ports.Kwok),
		"--cidr=" + podCIDR,
		"--server-address=" + hostPort(c.ports.Kwok),
	}
}
