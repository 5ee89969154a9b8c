//go:build e2e && peers

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/promql-adapter/promql-adapter/internal/kedarun"
	"github.com/promql-adapter/promql-adapter/internal/loadsim"
	"github.com/promql-adapter/promql-adapter/internal/stack"
)

// The Deployments of the KEDA tests: kso-* (and khb-so) are scaled by a KEDA ScaledObject, kours-* by an HPA on
// promql-adapter's own external metric; both on the load simulator's queue_messages_ready.
var kedaTargets = []loadsim.Target{
	queueTarget("kso-fwd"), queueTarget("kours-fwd"),
	queueTarget("kso-nofwd"), queueTarget("kours-nofwd"),
	queueTarget("kso-down"), queueTarget("kours-down"),
	queueTarget("kso-lat"), queueTarget("race-s"), queueTarget("race-b"),
	queueTarget("khb-so"), queueTarget("khb-ours"), // TestE2EKedaHelmBeside, in a control plane of its own
}

// KEDA is a peer of make test-peers (build tag peers): its Deployments join the stack's, and TestMain stops it.
func init() {
	peerTargets = append(peerTargets, kedaTargets...)
	peerStops["KEDA"] = stopKEDA
}

var (
	kedaOnce sync.Once
	kedaInst *kedarun.KEDA
	kedaErr  error
)

var scaledObjectGVR = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

// startKEDA starts KEDA's operator and metrics server once for the whole suite (TestMain stops them);
// a test that cannot start them fails. On failure the test prints the end of KEDA's logs.
func startKEDA(t testing.TB) *kedarun.KEDA {
	t.Helper()
	kedaOnce.Do(func() {
		bin, err := kedarun.BinDirFromEnv()
		if err != nil {
			kedaErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		kedaInst, kedaErr = kedarun.Start(ctx, kedarun.Options{
			BinDir: bin, RepoRoot: root, WorkDir: filepath.Join(st.WorkDir(), "keda"),
			Kubeconfig: st.Cluster.AdminKubeconfig(), Kube: st.Cluster.AdminConfig(),
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "e2e: "+f+"\n", a...) },
		})
	})
	if kedaErr != nil {
		t.Fatalf("KEDA: %v", kedaErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range kedaInst.LogPaths() {
				b, _ := os.ReadFile(p)
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("end of %s:\n%s", p, b)
			}
			t.Logf("promql-adapter log: %s", filepath.Join(st.WorkDir(), "logs", "promql-adapter.log"))
		}
	})
	return kedaInst
}

// stopKEDA stops KEDA if a test started it and returns the addresses it listened on.
func stopKEDA() ([]string, error) {
	if kedaInst == nil {
		return nil, nil
	}
	return kedaInst.Addrs(), kedaInst.Stop()
}

// forwardArgs are promql-adapter's flags to forward to KEDA's metrics server: its serving certificate is
// checked with the CA kedarun made, and we authenticate with our kube credentials (auth=serviceaccount,
// the default: the ServiceAccount token of custom-metrics/promql-adapter the stack runs the adapter with),
// which KEDA's metrics server checks with a TokenReview and a SubjectAccessReview against kube-apiserver.
func forwardArgs(k *kedarun.KEDA) []string {
	return []string{
		"--forward-external=" + k.MetricsServerURL() + ",name=keda,ca-file=" + k.CACertFile() + ",catch-all",
		"--forward-refresh-interval=2s",
	}
}

// restartAdapter restarts the stack's adapter with args and waits until kube-apiserver serves it again;
// the test's end restarts it with none.
func restartAdapter(t testing.TB, args []string) {
	t.Helper()
	ctx := context.Background()
	restart := func(args []string) error {
		if err := st.StopAdapter(); err != nil {
			return err
		}
		st.SetAdapterArgs(args)
		if err := st.StartAdapter(ctx); err != nil {
			return err
		}
		return st.WaitMetricsAPI(ctx, 90*time.Second)
	}
	if err := restart(args); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := restart(nil); err != nil {
			t.Errorf("restart the adapter without forwarding: %v", err)
		}
	})
}

// grantForwarding gives promql-adapter's ServiceAccount the README's promql-adapter-forwarder role: read
// external metrics, so that KEDA's metrics server (its delegated authorization) lets our forwards in.
func grantForwarding(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	cr := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "promql-adapter-forwarder"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"external.metrics.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list"}}},
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "promql-adapter-forwarder"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "promql-adapter-forwarder"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: stack.AdapterServiceAccount, Namespace: stack.AdapterNamespace}},
	}
	if _, err := st.Kube.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := st.Kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// scaledObject is a KEDA ScaledObject on a Prometheus trigger: the queue's length on the stack's Prometheus,
// 20 messages per replica.
func scaledObject(name, queue string, minReplicas, pollingInterval int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1",
		"kind":       "ScaledObject",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": name},
			"pollingInterval": pollingInterval,
			"minReplicaCount": minReplicas,
			"maxReplicaCount": int64(10),
			"triggers": []any{map[string]any{
				"type": "prometheus",
				"metadata": map[string]any{
					"serverAddress": st.Prom.URL(),
					"query":         fmt.Sprintf(`sum(queue_messages_ready{namespace=%q,queue=%q})`, ns, queue),
					"threshold":     "20",
				},
			}},
		},
	}}
}

func createScaledObject(t testing.TB, so *unstructured.Unstructured) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(st.Cluster.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(scaledObjectGVR).Namespace(ns).Create(context.Background(), so, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ScaledObject %s: %v", so.GetName(), err)
	}
}

// removeAtEnd deletes, when the test ends, the ScaledObjects (KEDA's operator then deletes their HPAs), HPAs and
// Deployments of the given names, so that nothing of a KEDA test keeps acting in the suite's later tests.
func removeAtEnd(t testing.TB, scaledObjects, hpas, deployments []string) {
	t.Cleanup(func() {
		ctx := context.Background()
		dyn, err := dynamic.NewForConfig(st.Cluster.AdminConfig())
		if err != nil {
			t.Error(err)
			return
		}
		for _, n := range scaledObjects {
			if err := dyn.Resource(scaledObjectGVR).Namespace(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete ScaledObject %s: %v", n, err)
			}
		}
		for _, n := range hpas {
			if err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete HPA %s: %v", n, err)
			}
		}
		for _, n := range deployments {
			if err := st.Kube.AppsV1().Deployments(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete Deployment %s: %v", n, err)
			}
		}
	})
}

// kedaPair creates the KEDA-scaled Deployment with its ScaledObject (min 1 replica, so that KEDA's HPA does
// the scaling) and ours with an HPA on promql-adapter's queue_messages_ready.
func kedaPair(t *testing.T, suffix string) (kso, kours string) {
	t.Helper()
	ctx := context.Background()
	kso, kours = "kso-"+suffix, "kours-"+suffix
	removeAtEnd(t, []string{kso}, []string{kours}, []string{kso, kours})
	for _, n := range []string{kso, kours} {
		if err := st.CreateWorkload(ctx, queueTarget(n), 1); err != nil {
			t.Fatal(err)
		}
	}
	createScaledObject(t, scaledObject(kso, kso, 1, 5))
	h := hpa(kours, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": kours}}},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(20, resource.DecimalSI)},
	}})
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "KEDA's operator creates keda-hpa-"+kso, func() (bool, string) {
		_, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "keda-hpa-"+kso, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return kso, kours
}

// kedaMetricPath is the path KEDA's HPA reads for the ScaledObject's first trigger.
func kedaMetricPath(so string) string {
	return "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + ns + "/s0-prometheus?labelSelector=" +
		url.QueryEscape("scaledobject.keda.sh/name="+so)
}

// adapterMetric sums the samples of a metric on the adapter's own /metrics whose labels contain every
// "k=v" of labels.
func adapterMetric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	tlsCfg, err := rest.TLSConfigFor(st.Cluster.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	resp, err := hc.Get(st.AdapterURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
lines:
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if !strings.Contains(line, k+`="`+v+`"`) {
				continue lines
			}
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += f
		}
	}
	return sum
}

func hpaState(name string) string {
	h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "replicas %d desired %d", h.Status.CurrentReplicas, h.Status.DesiredReplicas)
	for _, c := range h.Status.Conditions {
		fmt.Fprintf(&b, "; %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, m := range h.Status.CurrentMetrics {
		if m.External != nil {
			fmt.Fprintf(&b, "; current %s=%s", m.External.Metric.Name, m.External.Current.AverageValue)
		}
	}
	return b.String()
}

// TestE2EKedaForward: promql-adapter holds v1beta1.external.metrics.k8s.io and forwards what it does not
// serve to a real KEDA's metrics server. A ScaledObject (Prometheus trigger) and an HPA on our own metric
// both scale their Deployments, and KEDA's HPA reads its metric through promql-adapter.
func TestE2EKedaForward(t *testing.T) {
	k := startKEDA(t)
	grantForwarding(t)
	restartAdapter(t, forwardArgs(k))
	kso, kours := kedaPair(t, "fwd")
	before := adapterMetric(t, "promql_adapter_forwarded_requests_total", "upstream=keda", "code=200")

	for _, n := range []string{kso, kours} {
		if err := st.Sim.SetQueue(ns, n, 60); err != nil {
			t.Fatal(err)
		}
	}
	// 60 messages at 20 per replica: 3 replicas each.
	eventually(t, 120*time.Second, "both Deployments at 3 replicas", func() (bool, string) {
		a, b := replicas(t, kso), replicas(t, kours)
		return a == 3 && b == 3, fmt.Sprintf("%s %d (%s), %s %d (%s)", kso, a, hpaState("keda-hpa-"+kso), kours, b, hpaState(kours))
	})
	after := adapterMetric(t, "promql_adapter_forwarded_requests_total", "upstream=keda", "code=200")
	if after <= before {
		t.Fatalf("KEDA's HPA scaled, but promql-adapter forwarded no request to keda (%v before, %v after)", before, after)
	}
	t.Logf("KEDA's HPA through promql-adapter: %s; forwarded to keda with 200: %v → %v", hpaState("keda-hpa-"+kso), before, after)

	// The same read an HPA makes, through kube-apiserver: KEDA's value, through us.
	var v struct {
		Items []struct {
			MetricName string            `json:"metricName"`
			Value      resource.Quantity `json:"value"`
		} `json:"items"`
	}
	raw(t, kedaMetricPath(kso), &v)
	if len(v.Items) != 1 || v.Items[0].MetricName != "s0-prometheus" || v.Items[0].Value.AsApproximateFloat64() < 55 || v.Items[0].Value.AsApproximateFloat64() > 60 {
		t.Fatalf("KEDA's metric through kube-apiserver and promql-adapter: %+v, want s0-prometheus ≈ 60 (the queue drains slowly)", v.Items)
	}

	// And down again: KEDA's HPA follows the signal through us.
	if err := st.Sim.SetQueue(ns, kso, 20); err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, kso+" back to 1 replica", func() (bool, string) {
		a := replicas(t, kso)
		return a == 1, fmt.Sprintf("%s %d (%s)", kso, a, hpaState("keda-hpa-"+kso))
	})
}

// TestE2EKedaNoForward: the same without forwarding. KEDA's HPA gets promql-adapter's 404 for its
// metric (its ScalingActive condition says so), while our HPA scales.
func TestE2EKedaNoForward(t *testing.T) {
	startKEDA(t)
	kso, kours := kedaPair(t, "nofwd")
	for _, n := range []string{kso, kours} {
		if err := st.Sim.SetQueue(ns, n, 60); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 120*time.Second, kours+" at 3 replicas", func() (bool, string) {
		b := replicas(t, kours)
		return b == 3, fmt.Sprintf("%s %d (%s)", kours, b, hpaState(kours))
	})
	var msg string
	eventually(t, 60*time.Second, "keda-hpa-"+kso+" ScalingActive False on the external metric", func() (bool, string) {
		h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), "keda-hpa-"+kso, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := condition(h, autoscalingv2.ScalingActive)
		if c == nil {
			return false, "no ScalingActive condition"
		}
		msg = c.Reason + ": " + c.Message
		return c.Status == "False" && c.Reason == "FailedGetExternalMetric" && strings.Contains(c.Message, `external metric "s0-prometheus" is not served`), msg
	})
	if got := replicas(t, kso); got != 1 {
		t.Fatalf("%s at %d replicas, want 1: its HPA cannot read its metric", kso, got)
	}
	// What the HPA controller got, asked through kube-apiserver: our 404, naming the metric.
	err := get(kedaMetricPath(kso), nil)
	if err == nil || !strings.Contains(err.Error(), `"code":404`) || !strings.Contains(err.Error(), `external metric \"s0-prometheus\" is not served`) {
		t.Fatalf("GET KEDA's metric without forwarding: %v, want promql-adapter's 404 naming s0-prometheus", err)
	}
	t.Logf("KEDA's HPA without forwarding: ScalingActive False %s", msg)
	t.Logf("GET through kube-apiserver: %v", err)
}

// TestE2EKedaDown: KEDA's metrics server killed → a GET of KEDA's metric through kube-apiserver gets a
// 503 naming upstream keda, within a bounded time; our HPA keeps scaling.
func TestE2EKedaDown(t *testing.T) {
	k := startKEDA(t)
	grantForwarding(t)
	restartAdapter(t, forwardArgs(k))
	kso, kours := kedaPair(t, "down")
	if err := st.Sim.SetQueue(ns, kso, 40); err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, kso+" at 2 replicas through us", func() (bool, string) {
		a := replicas(t, kso)
		return a == 2, fmt.Sprintf("%s %d (%s)", kso, a, hpaState("keda-hpa-"+kso))
	})

	_, pid := k.PIDs()
	if err := k.StopMetricsServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.StartMetricsServer(context.Background()); err != nil {
			t.Errorf("restart KEDA's metrics server: %v", err)
		}
	})
	t.Logf("KEDA's metrics server (pid %d) killed", pid)
	start := time.Now()
	var last error
	eventually(t, 30*time.Second, "KEDA's metric gets a 503 naming upstream keda", func() (bool, string) {
		last = get(kedaMetricPath(kso), nil)
		return last != nil && strings.Contains(last.Error(), "upstream keda") && strings.Contains(last.Error(), "503"), fmt.Sprint(last)
	})
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), last)

	// Ours keeps scaling: up, then down.
	for _, want := range []struct {
		queue float64
		reps  int32
	}{{80, 4}, {20, 1}} {
		if err := st.Sim.SetQueue(ns, kours, want.queue); err != nil {
			t.Fatal(err)
		}
		eventually(t, 120*time.Second, fmt.Sprintf("%s at %d replicas", kours, want.reps), func() (bool, string) {
			b := replicas(t, kours)
			return b == want.reps, fmt.Sprintf("%s %d (%s)", kours, b, hpaState(kours))
		})
	}
	// KEDA's HPA sees the 503 and keeps its replicas.
	h, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(context.Background(), "keda-hpa-"+kso, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(h, autoscalingv2.ScalingActive); c == nil || c.Status != "False" || !strings.Contains(c.Message, "s0-prometheus") {
		t.Fatalf("keda-hpa-%s with KEDA's metrics server down: %s", kso, hpaState("keda-hpa-"+kso))
	}
	if got := replicas(t, kso); got != 2 {
		t.Fatalf("%s at %d replicas with its metric unavailable, want it kept at 2", kso, got)
	}
	t.Logf("KEDA's HPA with KEDA's metrics server down: %s", hpaState("keda-hpa-"+kso))
}
