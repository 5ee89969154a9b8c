// Package localcluster starts a real, local Kubernetes control plane for
// end-to-end tests and demos: etcd, kube-apiserver, kube-controller-manager and
// kwok with one fake node, all listening on 127.0.0.1 only.
//
// There is no kube-scheduler: workloads must set spec.template.spec.nodeName to
// NodeName ("kwok-node-0"), and kwok then makes their pods Running and Ready.
// The binaries come from hack/cluster/build.sh (make cluster-bins); see BinDirFromEnv.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// NodeName is the name of the fake node that kwok manages; test workloads set it as spec.nodeName.
const NodeName = "kwok-node-0"

// Default values of Options.
const (
	DefaultHPASyncPeriod             = 2 * time.Second
	DefaultHPADownscaleStabilization = 5 * time.Second
	DefaultReadyTimeout              = 90 * time.Second
	DefaultPodCIDR                   = "10.250.1.0/24"
)

// Component names; each one logs to LogDir()/<name>.log.
const (
	ComponentEtcd              = "etcd"
	ComponentAPIServer         = "kube-apiserver"
	ComponentControllerManager = "kube-controller-manager"
	ComponentKwok              = "kwok"
)

// Ports are the loopback TCP ports of the control plane; 0 means pick a free one.
type Ports struct {
	EtcdClient        int // etcd client URL (plain http)
	EtcdPeer          int // etcd peer URL (plain http)
	APIServer         int // kube-apiserver secure port
	ControllerManager int // kube-controller-manager secure port
	Kwok              int // kwok's fake kubelet server (also the node's daemon endpoint port)
}

// All returns every port, in start order.
func (p Ports) All() []int {
	return []int{p.EtcdClient, p.EtcdPeer, p.APIServer, p.ControllerManager, p.Kwok}
}

// Options configures Start; only BinDir is required.
type Options struct {
	BinDir                     string                           // directory with etcd, kube-apiserver, kube-controller-manager, kwok
	WorkDir                    string                           // state, pki, kubeconfigs and logs; a new temp dir if empty; its subdirectories are recreated
	KwokStagesFile             string                           // kwok stages; default BinDir/kwok-stages.yaml
	PodCIDR                    string                           // where kwok gives pods their IPs (e.g. a podnet.Net's CIDR); default DefaultPodCIDR
	HPASyncPeriod              time.Duration                    // --horizontal-pod-autoscaler-sync-period; default 2s
	HPADownscaleStabilization  time.Duration                    // --horizontal-pod-autoscaler-downscale-stabilization; default 5s
	Ports                      Ports                            // 0 = free loopback port
	ReadyTimeout               time.Duration                    // bound of each readiness wait; default 90s
	APIServerExtraArgs         []string                         // appended to kube-apiserver's flags
	ControllerManagerExtraArgs []string                         // appended to kube-controller-manager's flags
	Logf                       func(format string, args ...any) // progress messages (e.g. testing.T.Logf); nil = silent
}

// Timings records how long the start-up phases took, measured from the call to Start.
type Timings struct {
	EtcdReady      time.Duration // etcd /health ok
	APIServerReady time.Duration // kube-apiserver /readyz ok
	NodeReady      time.Duration // fake node Ready
	Total          time.Duration // node Ready and default ServiceAccount present
}

// Cluster is a running local control plane; call Stop when done.
type Cluster struct {
	workDir string
	binDir  string
	ports   Ports
	pki     *pki
	admin   *rest.Config
	kubecfg map[string]string // user -> kubeconfig path
	logDir  string
	timings Timings
	logf    func(format string, args ...any)

	mu      sync.Mutex
	procs   []*process // in start order
	stopped bool
	stopErr error
}

// Start generates the PKI and kubeconfigs and starts etcd, kube-apiserver,
// kube-controller-manager and kwok; it returns once the fake node is Ready and
// the default ServiceAccount exists. On error everything started is stopped.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	begin := time.Now()
	if err := opts.complete(); err != nil {
		return nil, err
	}
	c := &Cluster{workDir: opts.WorkDir, binDir: opts.BinDir, logf: opts.Logf, kubecfg: map[string]string{}}
	if err := c.start(ctx, opts, begin); err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop after failed start: %w", stopErr))
		}
		return nil, err
	}
	return c, nil
}

// complete validates opts and fills in defaults.
func (o *Options) complete() error {
	if o.BinDir == "" {
		return errors.New("localcluster: Options.BinDir is empty (run `make cluster-bins` and set PROMQL_ADAPTER_CLUSTER_BIN)")
	}
	if err := checkBinDir(o.BinDir); err != nil {
		return err
	}
	if o.KwokStagesFile == "" {
		o.KwokStagesFile = filepath.Join(o.BinDir, kwokStagesName)
	}
	if _, err := os.Stat(o.KwokStagesFile); err != nil {
		return fmt.Errorf("localcluster: kwok stages file: %w (run `make cluster-bins`)", err)
	}
	if o.WorkDir == "" {
		d, err := os.MkdirTemp("", "localcluster-")
		if err != nil {
			return fmt.Errorf("localcluster: create work dir: %w", err)
		}
		o.WorkDir = d
	}
	var err error
	if o.WorkDir, err = filepath.Abs(o.WorkDir); err != nil {
		return fmt.Errorf("localcluster: work dir: %w", err)
	}
	if o.PodCIDR == "" {
		o.PodCIDR = DefaultPodCIDR
	}
	if o.HPASyncPeriod == 0 {
		o.HPASyncPeriod = DefaultHPASyncPeriod
	}
	if o.HPADownscaleStabilization == 0 {
		o.HPADownscaleStabilization = DefaultHPADownscaleStabilization
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// start does the work of Start; the caller stops the cluster if it fails.
func (c *Cluster) start(ctx context.Context, opts Options, begin time.Time) error {
	dirs := map[string]string{}
	for _, d := range []string{"pki", "etcd", "kubeconfig", "logs", "kwok"} {
		p := filepath.Join(c.workDir, d)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("clean %s: %w", p, err)
		}
		if err := os.MkdirAll(p, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		dirs[d] = p
	}
	c.logDir = dirs["logs"]

	var err error
	if c.ports, err = resolvePorts(opts.Ports); err != nil {
		return err
	}
	if c.pki, err = generatePKI(dirs["pki"]); err != nil {
		return fmt.Errorf("generate PKI: %w", err)
	}
	server := "https://" + hostPort(c.ports.APIServer)
	if err := c.writeKubeconfigs(server, dirs["kubeconfig"]); err != nil {
		return err
	}
	c.admin = c.restConfig(server, adminName)
	c.logf("localcluster: work dir %s, ports %+v", c.workDir, c.ports)

	// etcd
	etcd, err := c.run(ComponentEtcd, etcdArgs(dirs["etcd"], c.ports), nil)
	if err != nil {
		return err
	}
	if err := c.waitEtcd(ctx, etcd, opts.ReadyTimeout); err != nil {
		return err
	}
	c.timings.EtcdReady = time.Since(begin)

	// kube-apiserver
	apiserver, err := c.run(ComponentAPIServer, append(c.apiserverArgs(), opts.APIServerExtraArgs...), nil)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.admin)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	err = poll(ctx, opts.ReadyTimeout, apiserver, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	})
	if err != nil {
		return err
	}
	c.timings.APIServerReady = time.Since(begin)
	c.logf("localcluster: kube-apiserver ready after %s", c.timings.APIServerReady.Round(time.Millisecond))

	// kube-controller-manager
	kcm, err := c.run(ComponentControllerManager, append(c.controllerManagerArgs(opts), opts.ControllerManagerExtraArgs...), nil)
	if err != nil {
		return err
	}

	// kwok and its fake node
	stages := filepath.Join(dirs["kwok"], "stages.yaml")
	if err := writeStages(opts.KwokStagesFile, stages); err != nil {
		return err
	}
	kwok, err := c.run(ComponentKwok, c.kwokArgs(stages, opts.PodCIDR), []string{"KWOK_WORKDIR=" + dirs["kwok"]})
	if err != nil {
		return err
	}
	if err := createNode(ctx, client); err != nil {
		return err
	}
	err = poll(ctx, opts.ReadyTimeout, kwok, "node "+NodeName+" Ready", func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	c.timings.NodeReady = time.Since(begin)
	err = poll(ctx, opts.ReadyTimeout, kcm, "ServiceAccount default/default", func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return err
	}
	c.timings.Total = time.Since(begin)
	c.logf("localcluster: ready after %s (node Ready %s)", c.timings.Total.Round(time.Millisecond), c.timings.NodeReady.Round(time.Millisecond))
	return nil
}

// run starts one component and records it for Stop.
func (c *Cluster) run(name string, args, env []string) (*process, error) {
	p, err := startProcess(name, filepath.Join(c.binDir, name), args, env, c.workDir, c.logDir)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.logf("localcluster: started %s (pid %d), log %s", name, p.pid(), p.logPath)
	return p, nil
}

// poll calls cond every 100 ms until it returns true, the timeout passes, ctx ends or p exits.
// Errors include the tail of p's log.
func poll(ctx context.Context, timeout time.Duration, p *process, what string, cond func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := cond(attemptCtx)
		cancel()
		if err != nil {
			return p.failure("localcluster: waiting for %s: %v", what, err)
		}
		if ok {
			return nil
		}
		if done, _ := p.exited(); done {
			return p.failure("localcluster: waiting for %s: %s exited", what, p.name)
		}
		if time.Now().After(deadline) {
			return p.failure("localcluster: timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return p.failure("localcluster: waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitEtcd waits until etcd's /health endpoint answers.
func (c *Cluster) waitEtcd(ctx context.Context, etcd *process, timeout time.Duration) error {
	url := "http://" + hostPort(c.ports.EtcdClient) + "/health"
	hc := &http.Client{Timeout: time.Second}
	return poll(ctx, timeout, etcd, "etcd "+url, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// createNode creates the fake node that kwok manages.
func createNode(ctx context.Context, client kubernetes.Interface) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"kubernetes.io/hostname": NodeName,
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	created, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", NodeName, err)
	}
	if err == nil && len(created.Status.Capacity) == 0 {
		created.Status.Capacity, created.Status.Allocatable = capacity, capacity
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("set capacity of node %s: %w", NodeName, err)
		}
	}
	return nil
}

// resolvePorts replaces every 0 in want with a distinct free loopback port.
func resolvePorts(want Ports) (Ports, error) {
	fields := []*int{&want.EtcdClient, &want.EtcdPeer, &want.APIServer, &want.ControllerManager, &want.Kwok}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for _, f := range fields {
		if *f != 0 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Ports{}, fmt.Errorf("pick a free loopback port: %w", err)
		}
		listeners = append(listeners, l) // held until all are picked, so they are distinct
		*f = l.Addr().(*net.TCPAddr).Port
	}
	return want, nil
}

// Stop terminates the components in reverse start order (etcd last): SIGTERM,
// up to 10 s, then SIGKILL. It only signals processes it started and is idempotent.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		start := time.Now()
		if err := p.stop(stopTimeout); err != nil {
			errs = append(errs, err)
		}
		c.logf("localcluster: stopped %s (pid %d) in %s", p.name, p.pid(), time.Since(start).Round(time.Millisecond))
	}
	c.stopErr = errors.Join(errs...)
	return c.stopErr
}

// AdminConfig returns a copy of the rest.Config of the system:masters admin user.
func (c *Cluster) AdminConfig() *rest.Config { return rest.CopyConfig(c.admin) }

// AdminKubeconfig returns the path of the admin (system:masters) kubeconfig.
func (c *Cluster) AdminKubeconfig() string { return c.kubecfg[adminName] }

// AdapterKubeconfig returns the path of the adapter's kubeconfig (user AdapterUser, not a master).
func (c *Cluster) AdapterKubeconfig() string { return c.kubecfg[adapterClientName] }

// CACertPEM returns the cluster CA certificate, e.g. for an APIService caBundle.
func (c *Cluster) CACertPEM() []byte { return append([]byte(nil), c.pki.caPEM...) }

// CACertFile returns the path of the cluster CA certificate.
func (c *Cluster) CACertFile() string { return c.pki.caPath }

// AdapterServingCertFile returns the adapter serving certificate (SANs promql-adapter.custom-metrics.svc[.cluster.local], localhost, 127.0.0.1).
func (c *Cluster) AdapterServingCertFile() string { return c.pki.certPath(adapterServingName) }

// AdapterServingKeyFile returns the private key of the adapter serving certificate.
func (c *Cluster) AdapterServingKeyFile() string { return c.pki.keyPath(adapterServingName) }

// LogDir returns the directory holding <component>.log for every component.
func (c *Cluster) LogDir() string { return c.logDir }

// WorkDir returns the directory holding all state of this cluster.
func (c *Cluster) WorkDir() string { return c.workDir }

// APIServerURL returns the kube-apiserver URL, https://127.0.0.1:<port>.
func (c *Cluster) APIServerURL() string { return c.admin.Host }

// Ports returns the ports actually used.
func (c *Cluster) Ports() Ports { return c.ports }

// PIDs returns the process id of every started component by component name.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.procs))
	for _, p := range c.procs {
		m[p.name] = p.pid()
	}
	return m
}

// Timings returns how long the start-up phases took.
func (c *Cluster) Timings() Timings { return c.timings }

// Minor returns kube-apiserver's minor version (37 for v1.37.2), from its /version.
func (c *Cluster) Minor() (int, error) {
	cfg := c.AdminConfig()
	cfg.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	v, err := client.Discovery().ServerVersion()
	if err != nil {
		return 0, fmt.Errorf("GET /version: %w", err)
	}
	m, err := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	if err != nil {
		return 0, fmt.Errorf("minor version %q: %w", v.Minor, err)
	}
	return m, nil
}
