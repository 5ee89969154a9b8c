// Package stack brings up everything the end-to-end tests and the demo need on 127.0.0.1:
// the local control plane, the load simulator, Prometheus scraping it, and promql-adapter
// registered with kube-apiserver through the manifests in deploy/ and the local overlay.
package stack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/promrun"
)

// AdapterNamespace and AdapterServiceAccount are the identity deploy/rbac.yaml grants.
const (
	AdapterNamespace      = "custom-metrics"
	AdapterServiceAccount = "promql-adapter"
)

// Options configures Start.
type Options struct {
	RepoRoot  string           // the repository, for deploy/ and cmd/promql-adapter
	BinDir    string           // control plane binaries (localcluster.BinDirFromEnv)
	WorkDir   string           // everything the stack writes; a temporary dir if empty
	RulesFile string           // the adapter's rule file
	Targets   []loadsim.Target // simulated Deployments; Start creates their namespaces
	Cluster   localcluster.Options
	// ResourceMetrics registers metrics.k8s.io (deploy/apiservice-resource.yaml) with the adapter behind it;
	// the rule file must have resource rules.
	ResourceMetrics bool
	NoAdapter       bool // apply deploy/ but start no adapter: the caller runs replicas (StartReplica) and serves the Service
	NoManifests     bool // apply nothing of deploy/ and start no adapter: the caller installs (e.g. the Helm chart) and runs it
	Logf            func(format string, args ...any)
	// Scrape adds Prometheus targets (a synthetic exporter), ScrapeInterval sets Prometheus's
	// scrape interval (default 1 s), AdapterArgs are appended to the adapter's flags.
	Scrape         []promrun.Target
	ScrapeInterval time.Duration
	AdapterArgs    []string
}

// Stack is a running local environment.
type Stack struct {
	opts    Options
	Cluster *localcluster.Cluster
	Kube    kubernetes.Interface
	Prom    *promrun.Server
	Sim     *loadsim.Simulator
	SimURL  string
	promURL string

	cancel      context.CancelFunc
	bg          sync.WaitGroup
	adapterBin  string
	adapterPort int
	adapterKC   string
	rulesFile   string
	mu          sync.Mutex
	adapter     *exec.Cmd
	adapterDone chan struct{}
	replicas    []*Replica
}

// Start brings the stack up; on error everything started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.WorkDir == "" {
		if opts.WorkDir, err = os.MkdirTemp("", "promql-adapter-stack-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(opts.WorkDir, "logs"), 0o755); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &Stack{opts: opts, cancel: cancel}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	// The adapter reads a copy, so ReplaceRules can change it under a running adapter.
	rules, err := os.ReadFile(opts.RulesFile)
	if err != nil {
		return nil, err
	}
	s.rulesFile = filepath.Join(opts.WorkDir, "rules.yaml")
	if err := s.ReplaceRules(rules); err != nil {
		return nil, err
	}

	// Build the adapter first: it needs no cluster, and a compile error should fail fast.
	s.adapterBin = filepath.Join(opts.WorkDir, "promql-adapter")
	build := exec.CommandContext(ctx, "go", "build", "-o", s.adapterBin, "./cmd/promql-adapter")
	build.Dir = opts.RepoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build promql-adapter: %v\n%s", err, out)
	}

	copts := opts.Cluster
	copts.BinDir, copts.WorkDir = opts.BinDir, filepath.Join(opts.WorkDir, "cluster")
	if copts.Logf == nil {
		copts.Logf = opts.Logf
	}
	// The tests use HPAs with minReplicas 0 (scale to zero by the HPA itself): before 1.37 that
	// needs the alpha gate HPAScaleToZero, which a cluster admin turns on.
	minor, err := localcluster.BinaryMinor(ctx, opts.BinDir)
	if err != nil {
		return nil, err
	}
	if gate := localcluster.ScaleToZeroGateArgs(minor); gate != nil {
		opts.Logf("Kubernetes 1.%d: turning on the alpha gate %s (on by default from 1.37)", minor, gate[0])
		copts.APIServerExtraArgs = append(slices.Clone(copts.APIServerExtraArgs), gate...)
		copts.ControllerManagerExtraArgs = append(slices.Clone(copts.ControllerManagerExtraArgs), gate...)
	}
	if s.Cluster, err = localcluster.Start(ctx, copts); err != nil {
		return nil, fmt.Errorf("local control plane: %w", err)
	}
	if s.Kube, err = kubernetes.NewForConfig(s.Cluster.AdminConfig()); err != nil {
		return nil, err
	}
	opts.Logf("control plane ready at %s (%s)", s.Cluster.APIServerURL(), s.Cluster.Timings().Total.Round(time.Millisecond))

	var namespaces []string
	for _, t := range opts.Targets {
		namespaces = append(namespaces, t.Namespace)
		if err := s.ensureNamespace(ctx, t.Namespace); err != nil {
			return nil, err
		}
	}
	pods, err := loadsim.NewInformerPods(bg, s.Kube, namespaces)
	if err != nil {
		return nil, err
	}
	if s.Sim, err = loadsim.New(loadsim.Options{Targets: opts.Targets, Pods: pods}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.SimURL = "http://" + ln.Addr().String()
	s.goBG(func() { s.Sim.Run(bg) })
	s.goBG(func() { _ = s.Sim.Serve(bg, ln) })

	if s.Prom, err = promrun.Start(ctx, promrun.Options{
		WorkDir:        filepath.Join(opts.WorkDir, "prometheus"),
		ScrapeInterval: cmp.Or(opts.ScrapeInterval, time.Second),
		Targets:        append([]promrun.Target{{Job: "loadsim", Address: ln.Addr().String()}}, opts.Scrape...),
	}); err != nil {
		return nil, err
	}
	s.promURL = s.Prom.URL()
	opts.Logf("prometheus at %s scraping the load simulator at %s", s.Prom.URL(), s.SimURL)
	if opts.NoManifests {
		return s, nil
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.adapterPort = port
	if err := s.applyManifests(ctx); err != nil {
		return nil, err
	}
	if s.adapterKC, err = s.ServiceAccountKubeconfig(ctx, AdapterNamespace, AdapterServiceAccount); err != nil {
		return nil, err
	}
	if opts.NoAdapter {
		return s, nil
	}
	if err := s.StartAdapter(ctx); err != nil {
		return nil, err
	}
	if err := s.WaitMetricsAPI(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	opts.Logf("promql-adapter registered: custom.metrics.k8s.io and external.metrics.k8s.io served through kube-apiserver")
	return s, nil
}

func (s *Stack) goBG(f func()) {
	s.bg.Add(1)
	go func() { defer s.bg.Done(); f() }()
}

func (s *Stack) ensureNamespace(ctx context.Context, name string) error {
	_, err := s.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return nil
}

// ServiceAccountKubeconfig writes a kubeconfig holding a token of a ServiceAccount, so a
// component runs with exactly the RBAC deploy/ grants it.
func (s *Stack) ServiceAccountKubeconfig(ctx context.Context, namespace, sa string) (string, error) {
	tr, err := s.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](48 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: s.Cluster.APIServerURL(), CertificateAuthorityData: s.Cluster.CACertPEM()}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa}
	cfg.CurrentContext = "local"
	path := filepath.Join(s.opts.WorkDir, sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", err
	}
	return path, nil
}

// ReplaceRules atomically replaces the adapter's rule file; the adapter reloads it within seconds.
func (s *Stack) ReplaceRules(data []byte) error {
	tmp := s.rulesFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.rulesFile)
}

// StartAdapter starts the promql-adapter process (again, after StopAdapter).
func (s *Stack) StartAdapter(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adapter != nil {
		return errors.New("adapter already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.opts.WorkDir, "logs", "promql-adapter.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.adapterBin, append([]string{
		"--config=" + s.rulesFile,
		"--prometheus-url=" + s.Prom.URL(),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.adapterPort),
		"--tls-cert-file=" + s.Cluster.AdapterServingCertFile(),
		"--tls-private-key-file=" + s.Cluster.AdapterServingKeyFile(),
		"--lister-kubeconfig=" + s.adapterKC,
		"--authentication-kubeconfig=" + s.adapterKC,
		"--authorization-kubeconfig=" + s.adapterKC,
		"--series-relist-interval=5s",
		"--v=2",
	}, s.opts.AdapterArgs...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start promql-adapter: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	s.adapter, s.adapterDone = cmd, done
	return nil
}

// SetAdapterArgs replaces the flags appended to the adapter's (Options.AdapterArgs) for its next
// StartAdapter, e.g. to restart it with forwarding on.
func (s *Stack) SetAdapterArgs(args []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.AdapterArgs = append([]string(nil), args...)
}

// StopAdapter kills the adapter process (SIGKILL: a crash, not a graceful stop) and waits for it.
func (s *Stack) StopAdapter() error {
	s.mu.Lock()
	cmd, done := s.adapter, s.adapterDone
	s.adapter = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("promql-adapter did not exit after SIGKILL")
	}
}

// AdapterPID is the adapter's process id, or 0 when it is not running.
func (s *Stack) AdapterPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adapter == nil {
		return 0
	}
	return s.adapter.Process.Pid
}

// WaitMetricsAPI waits until kube-apiserver proxies both metrics APIs to the adapter.
func (s *Stack) WaitMetricsAPI(ctx context.Context, timeout time.Duration) error {
	rc := s.Kube.Discovery().RESTClient()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		paths := []string{"/apis/custom.metrics.k8s.io/v1beta2", "/apis/custom.metrics.k8s.io/v1beta1", "/apis/external.metrics.k8s.io/v1beta1"}
		if s.opts.ResourceMetrics {
			paths = append(paths, "/apis/metrics.k8s.io/v1", "/apis/metrics.k8s.io/v1beta1")
		}
		for _, p := range paths {
			if _, last = rc.Get().AbsPath(p).DoRaw(ctx); last != nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("metrics APIs not served through kube-apiserver within %s: %v (adapter log: %s)", timeout, last,
			filepath.Join(s.opts.WorkDir, "logs", "promql-adapter.log"))
	}
	return nil
}

// CreateWorkload creates a Deployment whose pods kwok makes Ready, and a Service in front of it.
func (s *Stack) CreateWorkload(ctx context.Context, t loadsim.Target, replicas int32) error {
	return s.CreateWorkloadRequesting(ctx, t, replicas, nil)
}

// CreateWorkloadRequesting is CreateWorkload with resource requests on the pods' container (for HPA type: Resource).
func (s *Stack) CreateWorkloadRequesting(ctx context.Context, t loadsim.Target, replicas int32, requests corev1.ResourceList) error {
	if requests == nil {
		requests = corev1.ResourceList{}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: t.Deployment, Namespace: t.Namespace, Labels: t.MatchLabels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: t.MatchLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: t.MatchLabels},
				Spec: corev1.PodSpec{
					NodeName:    localcluster.NodeName, // no scheduler in the local control plane
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name: "app", Image: "fake-image:latest",
						Resources: corev1.ResourceRequirements{Requests: requests},
					}},
				},
			},
		},
	}
	if _, err := s.Kube.AppsV1().Deployments(t.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deployment %s/%s: %w", t.Namespace, t.Deployment, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: t.Service, Namespace: t.Namespace},
		Spec:       corev1.ServiceSpec{Selector: t.MatchLabels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := s.Kube.CoreV1().Services(t.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("service %s/%s: %w", t.Namespace, t.Service, err)
	}
	return nil
}

// Stop stops everything Start started, the adapter first and the control plane last.
func (s *Stack) Stop() error {
	var errs []error
	errs = append(errs, s.StopAdapter())
	s.mu.Lock()
	replicas := s.replicas
	s.mu.Unlock()
	for _, r := range replicas {
		errs = append(errs, r.Kill())
	}
	if s.Prom != nil {
		errs = append(errs, s.Prom.Stop())
	}
	s.cancel()
	s.bg.Wait()
	if s.Cluster != nil {
		errs = append(errs, s.Cluster.Stop())
	}
	return errors.Join(errs...)
}

// Addrs lists the host:port of every server the stack started (control plane, simulator,
// Prometheus, adapter), so a caller can check that nothing listens after Stop.
func (s *Stack) Addrs() []string {
	var out []string
	if s.Cluster != nil {
		for _, p := range s.Cluster.Ports().All() {
			out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		}
	}
	for _, u := range []string{s.SimURL, s.promURL} {
		if u != "" {
			out = append(out, strings.TrimPrefix(u, "http://"))
		}
	}
	if s.adapterPort != 0 {
		out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(s.adapterPort)))
	}
	s.mu.Lock()
	for _, r := range s.replicas {
		out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)))
	}
	s.mu.Unlock()
	return out
}

// AdapterURL is the adapter's own HTTPS address (not through kube-apiserver).
func (s *Stack) AdapterURL() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.adapterPort))
}

// WorkDir is where the stack keeps its files and logs.
func (s *Stack) WorkDir() string { return s.opts.WorkDir }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
