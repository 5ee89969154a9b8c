// Command demo is `make demo`: it brings up the local control plane, Prometheus, a load simulator
// and promql-adapter, then tells the autoscaling story of a Node.js-like workload whose event-loop
// utilisation (ELU) rises and falls, one line per HPA sync, and leaves everything running until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/podnet"
	"github.com/promql-adapter/promql-adapter/internal/stack"
	"github.com/promql-adapter/promql-adapter/wake"
)

const (
	ns       = "demo"
	capacity = 100 // requests/s one pod serves at ELU 1.0
	sync     = 2 * time.Second
)

func main() {
	cache := flag.String("cache", ".cache", "the Makefile's cache directory")
	k8s := flag.String("k8s-version", "v1.37.2", "control plane version built by make cluster-bins")
	binDir := flag.String("bin-dir", "", "the control plane binaries (default <cache>/cluster/k8s-<k8s-version>/bin)")
	noWait := flag.Bool("no-wait", false, "stop after the story instead of waiting for Ctrl-C (exit code 1 if it did not happen as told)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *binDir == "" {
		*binDir = filepath.Join(*cache, "cluster", "k8s-"+*k8s, "bin")
	}
	if err := run(ctx, *cache, *binDir, *noWait); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cache, binDir string, noWait bool) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	cache, _ = filepath.Abs(cache)
	work := filepath.Join(cache, "demo")
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	// Component logs go to files; the terminal shows the story's table alone.
	inProcess := filepath.Join(work, "in-process.log")
	logf, err := logToFile(inProcess)
	if err != nil {
		return err
	}
	defer logf.Close()
	say("component logs: %s (promql-wake, promql-activator), %s (promql-adapter, web's pods), %s (control plane), %s",
		inProcess, filepath.Join(work, "logs"), filepath.Join(work, "cluster", "logs"), filepath.Join(work, "prometheus"))
	web := loadsim.Target{Namespace: ns, Deployment: "web", Service: "web", Capacity: capacity, MatchLabels: map[string]string{"app": "web"}}
	say("bringing up etcd, kube-apiserver, kube-controller-manager, kwok, Prometheus and promql-adapter on 127.0.0.1 ...")
	start := time.Now()
	// web's pods get real addresses: a network namespace serves kwok's pod CIDR (needs root).
	pnet, err := podnet.New(ctx)
	if err != nil {
		return err
	}
	defer pnet.Close()
	st, err := stack.Start(ctx, stack.Options{
		RepoRoot:  root,
		BinDir:    binDir,
		WorkDir:   work,
		RulesFile: filepath.Join(root, "testdata/rules/e2e.yaml"),
		Targets:   []loadsim.Target{web},
		Cluster:   localcluster.Options{HPASyncPeriod: sync, HPADownscaleStabilization: 5 * time.Second, PodCIDR: pnet.CIDR.String()},
		// metrics.k8s.io from the rules' resources: section, so kubectl top works as with metrics-server.
		ResourceMetrics: true,
		Logf:            func(f string, a ...any) { say("  "+f, a...) },
	})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping everything ...")
		if err := st.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stop:", err)
		}
	}()
	say("up in %s", time.Since(start).Round(100*time.Millisecond))

	if err := st.CreateWorkload(ctx, web, 1); err != nil {
		return err
	}
	waker, err := st.StartWake(ctx, "demo", wake.ControllerOptions{})
	if err != nil {
		return err
	}
	defer waker.Stop()
	act, err := startActivatorDemo(ctx, st, pnet, root, filepath.Join(work, "logs"))
	if err != nil {
		return err
	}
	defer act.Stop()
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Annotations: map[string]string{
			wake.AnnotationEnabled:          "true",
			wake.AnnotationIdleAfter:        "15s",
			wake.AnnotationActivationMetric: "object:services/web/service_requests_in_flight",
			activator.AnnotationHosts:       webHost,
			activator.AnnotationService:     "web",
		}},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    10,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "elu_utilization"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("500m"))},
			}}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](5)}},
		},
	}
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		return err
	}
	say("Deployment demo/web (1 replica, %d req/s per pod at ELU 1.0) with an HPA on elu_utilization, target 500m, 1..10 replicas", capacity)
	say("promql-wake puts it to sleep after 15s without requests in flight at Service web, and wakes it when they return")
	say("web's pods run hack/nodeapp (Node.js) on their own IPs; promql-activator at %s routes Host %s to web", act.URL, webHost)
	say("")
	say("%8s  %8s  %9s  %15s  %s", "time", "load", "avg ELU", "HPA desired/ready", "")
	say("%8s  %s", "", "▶ rows are events: promql-wake's sleeps and wakes, the HPA's rescales")
	begin := time.Now()
	if err := printEvents(ctx, st.Kube, ns, begin); err != nil {
		return err
	}

	story := []struct {
		load  float64
		hold  time.Duration
		note  string
		holds func(seen) string // what this phase must have shown; "" when it did
		after func() string     // a step after the phase; "" when it went as told
	}{
		{30, 16 * time.Second, "quiet: one pod, ELU 0.3, below the 0.5 target", nil, nil},
		{320, 50 * time.Second, "traffic rises to 320 req/s: ELU saturates, the HPA adds pods until ELU ≈ 0.46 (7 pods)",
			func(s seen) string { return s.want(s.maxReady >= 5, "the HPA scaled web up to at least 5 pods") },
			func() string { return top(ctx, st, binDir) }},
		{60, 30 * time.Second, "traffic falls to 60 req/s: after the 5 s scale-down window the HPA removes pods (2 left)",
			func(s seen) string { return s.want(s.lastReady <= 3, "the HPA scaled web down to at most 3 pods") }, nil},
		{20, 20 * time.Second, "night: 20 req/s, one pod is enough", nil, nil},
		{0, 26 * time.Second, "no traffic: after 15s idle promql-wake scales web to zero (the HPA cannot go below 1)",
			func(s seen) string {
				return s.want(s.asleep && s.lastReady == 0, "promql-wake put web to sleep at zero pods")
			},
			func() string {
				say("--- a user arrives while web sleeps: curl through promql-activator")
				return act.curl(ctx)
			}},
		{120, 20 * time.Second, "traffic returns at 120 req/s: promql-wake wakes web to 1 within a second, then the HPA scales it to 3",
			func(s seen) string {
				return s.want(!s.asleep && s.lastReady >= 2, "promql-wake woke web and the HPA scaled it past one pod")
			}, nil},
	}
	var failed []string
	for _, phase := range story {
		if err := st.Sim.SetLoad(ns, "web", phase.load); err != nil {
			return err
		}
		say("--- %s", phase.note)
		var s seen
		end := time.Now().Add(phase.hold)
		for time.Now().Before(end) {
			if err := line(ctx, st, begin, &s); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(sync):
			}
		}
		if phase.holds != nil {
			if miss := phase.holds(s); miss != "" {
				say("!!! %s", miss)
				failed = append(failed, miss)
			}
		}
		if phase.after != nil {
			if miss := phase.after(); miss != "" {
				say("!!! %s", miss)
				failed = append(failed, miss)
			}
		}
	}
	var storyErr error
	say("")
	if len(failed) > 0 {
		storyErr = fmt.Errorf("the story did not happen as told: %s", strings.Join(failed, "; "))
		say("!!! %v", storyErr)
	} else {
		say("the story held: up, down, to zero and back")
	}
	if noWait {
		return storyErr
	}
	kc := st.Cluster.AdminKubeconfig()
	say("")
	say("Everything keeps running. Try, in another shell:")
	say("  export KUBECONFIG=%s", kc)
	say("  kubectl get hpa,deploy -n demo")
	say("  kubectl top pods -n demo; kubectl top nodes      # metrics.k8s.io, from PromQL")
	say("  kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2")
	say("  kubectl get --raw '/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/elu_utilization?labelSelector=app%%3Dweb'")
	say("  kubectl get --raw '/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/services/web/service_requests_per_second'")
	say("  kubectl get --raw '/apis/external.metrics.k8s.io/v1beta1/namespaces/demo/queue_messages_ready'")
	say("  curl -X PUT -d 400 %s/targets/demo/web/load     # change the simulated load", st.SimURL)
	say("  curl -H 'Host: %s' %s/   # web through promql-activator (held while web sleeps)", webHost, act.URL)
	say("  curl -X POST -H 'Authorization: Bearer %s' %s/wake/demo/hpa/web   # wake it by push", waker.Token, waker.URL)
	say("  Prometheus: %s   logs: %s, %s/logs and %s/cluster/logs", st.Prom.URL(), inProcess, st.WorkDir(), st.WorkDir())
	say("Ctrl-C stops everything.")
	<-ctx.Done()
	return storyErr
}

// seen is what the lines of one phase of the story showed.
type seen struct {
	maxReady, lastReady int32
	asleep              bool // at the last line: promql-wake keeps web asleep
}

// want returns "" when ok, and says what the phase should have shown (and what it did) when not.
func (s seen) want(ok bool, what string) string {
	if ok {
		return ""
	}
	return fmt.Sprintf("expected: %s; seen: at most %d ready, %d at the end, asleep %v", what, s.maxReady, s.lastReady, s.asleep)
}

// line prints one HPA sync: time, load, average ELU, the HPA's desired replicas and the ready pods.
func line(ctx context.Context, st *stack.Stack, begin time.Time, s *seen) error {
	h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	sim, err := st.Sim.Status(ns, "web")
	if err != nil {
		return err
	}
	elu := "-"
	if len(h.Status.CurrentMetrics) > 0 && h.Status.CurrentMetrics[0].Pods != nil && h.Status.CurrentReplicas > 0 {
		elu = h.Status.CurrentMetrics[0].Pods.Current.AverageValue.String()
	}
	d, err := st.Kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	bar := ""
	for range d.Status.ReadyReplicas {
		bar += "█"
	}
	s.asleep = h.Annotations[wake.AnnotationSleepingReplicas] != ""
	if s.asleep {
		bar = "(asleep)"
	}
	s.lastReady = d.Status.ReadyReplicas
	s.maxReady = max(s.maxReady, s.lastReady)
	say("%7.0fs  %4.0f r/s  %9s  %7d/%-7d  %s", time.Since(begin).Seconds(), sim.Load, elu, h.Status.DesiredReplicas, d.Status.ReadyReplicas, bar)
	return nil
}

// top shows kubectl top pods -n demo and kubectl top nodes through kube-apiserver: metrics.k8s.io served by
// promql-adapter from the cAdvisor-shaped series the load simulator exports. It returns "" when both printed
// rows, and what went wrong when not.
func top(ctx context.Context, st *stack.Stack, binDir string) string {
	say("--- kubectl top: metrics.k8s.io from promql-adapter (cpu is rate(container_cpu_usage_seconds_total[10s]), tracking ELU)")
	for _, args := range [][]string{{"top", "pods", "-n", ns}, {"top", "nodes"}} {
		say("$ kubectl %s", strings.Join(args, " "))
		var out []byte
		var err error
		// A pod's first rate needs two scrapes: a new pod shows within seconds.
		for try := 0; try < 10; try++ {
			cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", st.Cluster.AdminKubeconfig()}, args...)...)
			if out, err = cmd.CombinedOutput(); err == nil && strings.Count(strings.TrimSpace(string(out)), "\n") >= 1 {
				break
			}
			time.Sleep(time.Second)
		}
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			say("  %s", l)
		}
		if err != nil {
			return fmt.Sprintf("kubectl %s: %v", strings.Join(args, " "), err)
		}
	}
	return ""
}

// say prints one line of the demo; events arrive on their own goroutine.
func say(format string, a ...any) {
	sayMu.Lock()
	defer sayMu.Unlock()
	fmt.Fprintf(sayTo, format+"\n", a...)
}
