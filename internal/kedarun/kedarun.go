// Package kedarun runs a real KEDA (its operator and its metrics API server, built from KEDA's Go module by
// hack/keda/build.sh) as processes on 127.0.0.1 against a local control plane: it applies KEDA's CRDs from
// the same module version, creates KEDA's namespace, writes the certificates of their gRPC link and of the
// metrics server's HTTPS API itself, waits for both to be ready and stops them by process id. KEDA's cert
// rotation stays off (KEDA then patches no APIService) unless Options.OperatorArgs turn it on, as KEDA's chart does.
package kedarun

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

// BinDirEnv names the environment variable with the directory holding keda (cmd/operator) and keda-adapter
// (cmd/adapter); the Makefile sets it to .cache/keda/v<version>.
const BinDirEnv = "PROMQL_ADAPTER_KEDA_BIN"

// Module is KEDA's Go module; hack/keda/tools pins its version.
const Module = "github.com/kedacore/keda/v2"

// Binary names in the bin dir.
const (
	OperatorBinary      = "keda"
	MetricsServerBinary = "keda-adapter"
)

// Options configures Start.
type Options struct {
	BinDir     string       // keda and keda-adapter; BinDirFromEnv
	RepoRoot   string       // the repository: hack/keda/tools gives KEDA's module version, and so its CRDs
	WorkDir    string       // certificates and logs; a temp dir if empty
	Kubeconfig string       // the identity both run as (the local cluster's admin)
	Kube       *rest.Config // the same identity, for the CRDs and the namespace
	Namespace  string       // KEDA's own namespace (KEDA_CLUSTER_OBJECT_NAMESPACE, POD_NAMESPACE); default "keda"
	// ReadyTimeout bounds each readiness wait; default 120 s (KEDA's binaries are large and the machine may be loaded).
	ReadyTimeout time.Duration
	// OperatorArgs are more operator flags, given after kedarun's own (the last of a flag wins): e.g. those of
	// the keda-operator Deployment KEDA's chart renders, such as --enable-cert-rotation=true.
	OperatorArgs []string
	Logf         func(format string, args ...any)
}

// KEDA is a running KEDA.
type KEDA struct {
	opts    Options
	certDir string
	logDir  string
	modDir  string

	grpcPort, probePort, operatorMetricsPort int
	securePort, adapterMetricsPort           int

	mu           sync.Mutex
	operatorArgs []string
	restarts     int // operator restarts after an exit on its own (its cert rotator's restart)
	operator     *localcluster.Process
	metrics      *localcluster.Process
}

// BinDirFromEnv returns $PROMQL_ADAPTER_KEDA_BIN, or an error telling how to build KEDA when it is unset
// or a binary is missing.
func BinDirFromEnv() (string, error) {
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		return "", fmt.Errorf("kedarun: %s is not set; run `make keda` and set it to .cache/keda/v2.21.0", BinDirEnv)
	}
	for _, b := range []string{OperatorBinary, MetricsServerBinary} {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			return "", fmt.Errorf("kedarun: %w (run `make keda`)", err)
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("kedarun: %s is not an executable file", filepath.Join(dir, b))
		}
	}
	return dir, nil
}

// ModuleDir resolves KEDA's module directory, at the version hack/keda/tools pins (the one the binaries were
// built from), with `go mod download -json` there; it downloads the module if the cache lacks it.
func ModuleDir(ctx context.Context, repoRoot string) (dir, version string, err error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", Module)
	cmd.Dir = filepath.Join(repoRoot, "hack", "keda", "tools")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("kedarun: go mod download %s in %s: %v: %s", Module, cmd.Dir, err, stderr.Bytes())
	}
	var m struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", "", fmt.Errorf("kedarun: go mod download output: %w", err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", "", fmt.Errorf("kedarun: go mod download %s: %s", Module, cmp.Or(m.Error, "no Dir"))
	}
	return m.Dir, m.Version, nil
}

// Start applies KEDA's CRDs, creates its namespace and certificates, and starts its operator and then its
// metrics server, each waited for (operator: /readyz and its gRPC port; metrics server: /readyz on HTTPS).
// On error everything started is stopped.
func Start(ctx context.Context, opts Options) (_ *KEDA, err error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	opts.Namespace = cmp.Or(opts.Namespace, "keda")
	opts.ReadyTimeout = cmp.Or(opts.ReadyTimeout, 120*time.Second)
	if opts.BinDir == "" || opts.Kubeconfig == "" || opts.Kube == nil || opts.RepoRoot == "" {
		return nil, errors.New("kedarun: BinDir, RepoRoot, Kubeconfig and Kube are required")
	}
	if opts.WorkDir == "" {
		if opts.WorkDir, err = os.MkdirTemp("", "kedarun-"); err != nil {
			return nil, err
		}
	}
	k := &KEDA{opts: opts, certDir: filepath.Join(opts.WorkDir, "certs"), logDir: filepath.Join(opts.WorkDir, "logs")}
	if err := os.MkdirAll(k.logDir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = k.Stop()
		}
	}()

	modDir, version, err := ModuleDir(ctx, opts.RepoRoot)
	if err != nil {
		return nil, err
	}
	k.modDir = modDir
	if base := filepath.Base(opts.BinDir); strings.HasPrefix(base, "v") && base != version {
		return nil, fmt.Errorf("kedarun: binaries in %s, but hack/keda/tools pins %s %s: the CRDs would not match", opts.BinDir, Module, version)
	}
	if err := k.applyCRDs(ctx); err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(opts.Kube)
	if err != nil {
		return nil, err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("kedarun: namespace %s: %w", opts.Namespace, err)
	}
	if err := writeCerts(k.certDir, opts.Namespace); err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	k.grpcPort, k.probePort, k.operatorMetricsPort, k.securePort, k.adapterMetricsPort = ports[0], ports[1], ports[2], ports[3], ports[4]

	k.operatorArgs = opts.OperatorArgs
	if err := k.startOperator(ctx); err != nil {
		return nil, err
	}
	if err := k.StartMetricsServer(ctx); err != nil {
		return nil, err
	}
	opts.Logf("kedarun: KEDA %s up: operator pid %d (gRPC 127.0.0.1:%d), metrics server pid %d at %s; logs in %s",
		version, k.operator.PID(), k.grpcPort, k.metrics.PID(), k.MetricsServerURL(), k.logDir)
	return k, nil
}

func (k *KEDA) env() []string {
	return []string{
		"KUBECONFIG=" + k.opts.Kubeconfig,
		"WATCH_NAMESPACE=", // all namespaces
		"POD_NAMESPACE=" + k.opts.Namespace,
		"KEDA_CLUSTER_OBJECT_NAMESPACE=" + k.opts.Namespace,
		"POD_NAME=keda-operator",
		"OPERATOR_NAME=keda-operator",
	}
}

// rotationOn says whether the operator's flags turn its cert rotation on (the last --enable-cert-rotation wins).
func rotationOn(args []string) bool {
	on := false
	for _, a := range args {
		switch a {
		case "--enable-cert-rotation", "--enable-cert-rotation=true":
			on = true
		case "--enable-cert-rotation=false":
			on = false
		}
	}
	return on
}

// startOperator starts the operator and waits for it. With cert rotation on, KEDA's rotator exits the process
// (status 0) after it has written new certificates into its Secret, for the kubelet to restart the pod; kedarun
// restarts it the same way, up to three times.
func (k *KEDA) startOperator(ctx context.Context) error {
	args := []string{
		"--kubeconfig=" + k.opts.Kubeconfig,
		"--leader-elect=false",
		"--enable-cert-rotation=false", // our certificates; KEDA patches no APIService
		"--cert-dir=" + k.certDir,
		"--ca-dir=" + k.certDir,
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(k.operatorMetricsPort),
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(k.probePort),
		"--metrics-service-bind-address=127.0.0.1:" + strconv.Itoa(k.grpcPort),
		"--zap-encoder=console",
		"--zap-log-level=info",
	}
	k.mu.Lock()
	args = append(args, k.operatorArgs...)
	k.mu.Unlock()
	rotation := rotationOn(args)
	for attempt := 0; ; attempt++ {
		p, err := localcluster.StartProcess("keda-operator", filepath.Join(k.opts.BinDir, OperatorBinary), args, k.env(), filepath.Join(k.logDir, "keda-operator.log"))
		if err != nil {
			return fmt.Errorf("kedarun: %w", err)
		}
		k.mu.Lock()
		k.operator = p
		k.mu.Unlock()
		hc := &http.Client{Timeout: 2 * time.Second}
		readyz := "http://127.0.0.1:" + strconv.Itoa(k.probePort) + "/readyz"
		err = k.poll(ctx, p, "keda-operator /readyz and gRPC port", func(ctx context.Context) bool {
			if !httpOK(ctx, hc, readyz) {
				return false
			}
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", k.GRPCAddr())
			if err != nil {
				return false
			}
			_ = c.Close()
			return true
		})
		if err == nil || !rotation || !p.Exited() || attempt == 3 {
			return err
		}
		k.mu.Lock()
		k.restarts++
		k.mu.Unlock()
		k.opts.Logf("kedarun: keda-operator (cert rotation on) exited before ready; restarting it as the kubelet would (%d)", attempt+1)
	}
}

// RestartOperator stops the operator (SIGTERM, 10 s, then SIGKILL) and starts it again with args in place of
// Options.OperatorArgs, as a rollout of its Deployment with new arguments would.
func (k *KEDA) RestartOperator(ctx context.Context, args []string) error {
	k.mu.Lock()
	p := k.operator
	k.operatorArgs = args
	k.mu.Unlock()
	if p != nil {
		if err := p.Stop(10 * time.Second); err != nil {
			return fmt.Errorf("kedarun: stop keda-operator: %w", err)
		}
	}
	return k.startOperator(ctx)
}

// OperatorRestarts is how often the operator exited on its own while starting and was started again (with
// cert rotation on, KEDA's rotator exits after writing its Secret).
func (k *KEDA) OperatorRestarts() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.restarts
}

// StartMetricsServer starts KEDA's metrics API server (again, after StopMetricsServer) and waits for its /readyz.
func (k *KEDA) StartMetricsServer(ctx context.Context) error {
	k.mu.Lock()
	running := k.metrics != nil && !k.metrics.Exited()
	k.mu.Unlock()
	if running {
		return errors.New("kedarun: metrics server already running")
	}
	args := []string{
		"--kubeconfig=" + k.opts.Kubeconfig,
		"--lister-kubeconfig=" + k.opts.Kubeconfig,
		"--authentication-kubeconfig=" + k.opts.Kubeconfig,
		"--authorization-kubeconfig=" + k.opts.Kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(k.securePort),
		"--cert-dir=" + k.certDir, // the gRPC client's ca.crt, tls.crt, tls.key
		"--tls-cert-file=" + filepath.Join(k.certDir, certFile),
		"--tls-private-key-file=" + filepath.Join(k.certDir, keyFile),
		"--metrics-service-address=" + k.GRPCAddr(),
		// KEDA binds its own /metrics on every interface (":port"); it has no flag for the address.
		"--port=" + strconv.Itoa(k.adapterMetricsPort),
		"--zap-encoder=console",
		"--zap-log-level=info",
	}
	p, err := localcluster.StartProcess("keda-metrics-apiserver", filepath.Join(k.opts.BinDir, MetricsServerBinary), args, k.env(), filepath.Join(k.logDir, "keda-metrics-apiserver.log"))
	if err != nil {
		return fmt.Errorf("kedarun: %w", err)
	}
	k.mu.Lock()
	k.metrics = p
	k.mu.Unlock()
	hc, err := k.httpsClient()
	if err != nil {
		return err
	}
	return k.poll(ctx, p, "keda-metrics-apiserver /readyz", func(ctx context.Context) bool {
		return httpOK(ctx, hc, k.MetricsServerURL()+"/readyz")
	})
}

// StopMetricsServer kills KEDA's metrics server (SIGKILL, a crash) by its process id and waits for it.
func (k *KEDA) StopMetricsServer() error {
	k.mu.Lock()
	p := k.metrics
	k.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Stop stops the metrics server and the operator (SIGTERM, 10 s, then SIGKILL), by process id. The CRDs and
// the namespace stay (they go with the cluster).
func (k *KEDA) Stop() error {
	k.mu.Lock()
	ps := []*localcluster.Process{k.metrics, k.operator}
	k.mu.Unlock()
	var errs []error
	for _, p := range ps {
		if p != nil {
			errs = append(errs, p.Stop(10*time.Second))
		}
	}
	return errors.Join(errs...)
}

// PIDs are the process ids of the operator and the metrics server (0: not running).
func (k *KEDA) PIDs() (operator, metricsServer int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.operator != nil && !k.operator.Exited() {
		operator = k.operator.PID()
	}
	if k.metrics != nil && !k.metrics.Exited() {
		metricsServer = k.metrics.PID()
	}
	return operator, metricsServer
}

// MetricsServerURL is the metrics server's HTTPS address, https://127.0.0.1:port.
func (k *KEDA) MetricsServerURL() string { return "https://127.0.0.1:" + strconv.Itoa(k.securePort) }

// GRPCAddr is the operator's gRPC metrics service, 127.0.0.1:port.
func (k *KEDA) GRPCAddr() string { return "127.0.0.1:" + strconv.Itoa(k.grpcPort) }

// CACertFile verifies the metrics server's serving certificate.
func (k *KEDA) CACertFile() string { return filepath.Join(k.certDir, caFile) }

// LogPaths are the operator's and the metrics server's log files.
func (k *KEDA) LogPaths() []string {
	return []string{filepath.Join(k.logDir, "keda-operator.log"), filepath.Join(k.logDir, "keda-metrics-apiserver.log")}
}

// Addrs lists every loopback address KEDA listens on, so a caller can check nothing listens after Stop.
func (k *KEDA) Addrs() []string {
	var out []string
	for _, p := range []int{k.grpcPort, k.probePort, k.operatorMetricsPort, k.securePort, k.adapterMetricsPort} {
		if p != 0 {
			out = append(out, "127.0.0.1:"+strconv.Itoa(p))
		}
	}
	return out
}

func (k *KEDA) httpsClient() (*http.Client, error) {
	ca, err := os.ReadFile(k.CACertFile())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// poll waits, every 250 ms up to ReadyTimeout, for cond; it fails early when p exits.
func (k *KEDA) poll(ctx context.Context, p *localcluster.Process, what string, cond func(context.Context) bool) error {
	start := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, k.opts.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, errors.New("exited")
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return cond(actx), nil
	})
	if err != nil {
		return p.Failure(fmt.Sprintf("kedarun: waiting for %s: %v", what, err))
	}
	k.opts.Logf("kedarun: %s ready after %s", what, time.Since(start).Round(time.Millisecond))
	return nil
}

func httpOK(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// applyCRDs server-side-applies every CRD of KEDA's config/crd/bases and waits until each is Established.
func (k *KEDA) applyCRDs(ctx context.Context) error {
	dir := filepath.Join(k.modDir, "config", "crd", "bases")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("kedarun: no CRDs in %s (%v)", dir, err)
	}
	dyn, err := dynamic.NewForConfig(k.opts.Kube)
	if err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("kedarun: %s: %w", f, err)
			}
			if len(obj) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			if _, err := dyn.Resource(crdGVR).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "kedarun", Force: true}); err != nil {
				return fmt.Errorf("kedarun: apply CRD %s from %s: %w", u.GetName(), f, err)
			}
			names = append(names, u.GetName())
		}
	}
	for _, n := range names {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, k.opts.ReadyTimeout, true, func(ctx context.Context) (bool, error) {
			u, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("kedarun: CRD %s not Established within %s", n, k.opts.ReadyTimeout)
		}
	}
	k.opts.Logf("kedarun: %d CRDs from %s Established", len(names), dir)
	return nil
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
