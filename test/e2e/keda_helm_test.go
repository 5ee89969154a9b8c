//go:build e2e && peers

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/kedarun"
	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

// TestE2EKedaHelmBeside installs, into a control plane of its own, two Helm releases side by side: KEDA's (the
// stand-in chart testdata/keda-chart, with the objects KEDA's chart makes for its metrics server and its operator's
// Deployment) and ours (apiService.ownedElsewhere: [v1beta1.external.metrics.k8s.io], forward.external to KEDA's
// metrics server with its CA from a Secret). KEDA's real operator and metrics server run as processes, the
// operator with the arguments of the release's Deployment: certificate rotation on, and, by default, its patching
// of the APIService's caBundle. Measured over windows of the APIService's watch: how long it is ours, how often
// KEDA's operator rewrites it and how fast our controller takes it back; then with KEDA's documented value
// certificates.operator.apiServicePatching.enabled=false (a helm upgrade and the operator's rollout), zero
// rewrites. A `helm upgrade` of KEDA's release → ours again within 10 s. A ScaledObject's HPA reads KEDA's
// s0-prometheus through promql-adapter and an HPA on our own rule scales: both scale.
func TestE2EKedaHelmBeside(t *testing.T) {
	bin, err := kedarun.BinDirFromEnv()
	if err != nil {
		t.Fatalf("KEDA: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cl, kube, agg := ownCluster(ctx, t, localcluster.Options{
		WorkDir:       filepath.Join(st.WorkDir(), "keda-helm-cluster"),
		HPASyncPeriod: syncDur, HPADownscaleStabilization: 5 * time.Second,
	})
	kc := cl.AdminKubeconfig()
	dyn, err := dynamic.NewForConfig(cl.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}

	// KEDA's release, and its operator and metrics server as its Deployment runs them.
	kedaChart := filepath.Join(root, "testdata/keda-chart")
	if _, err := runHelm(t, kc, "install", "keda", kedaChart, "--namespace", "keda", "--create-namespace"); err != nil {
		t.Fatal(err)
	}
	opArgs := kedaOperatorArgs(ctx, t, kube)
	if !slices.Contains(opArgs, "--enable-cert-rotation=true") || slices.ContainsFunc(opArgs, func(a string) bool { return strings.HasPrefix(a, "--enable-apiservice-patching") }) {
		t.Fatalf("KEDA's chart by default: cert rotation on and --enable-apiservice-patching left to the operator (true); got %q", opArgs)
	}
	t.Logf("keda-operator's arguments from the release: %q", opArgs)
	k, err := kedarun.Start(ctx, kedarun.Options{
		BinDir: bin, RepoRoot: root, WorkDir: filepath.Join(st.WorkDir(), "keda-helm"),
		Kubeconfig: kc, Kube: cl.AdminConfig(), OperatorArgs: opArgs, Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("KEDA: %v", err)
	}
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Errorf("stop KEDA: %v", err)
		}
		if t.Failed() {
			for _, p := range k.LogPaths() {
				b, _ := os.ReadFile(p)
				t.Logf("end of %s:\n%s", p, b[max(0, len(b)-6000):])
			}
		}
	})
	var kedaCA []byte
	eventually(t, 60*time.Second, "KEDA's operator fills kedaorg-certs and writes its CA into the APIService", func() (bool, string) {
		s, err := kube.CoreV1().Secrets("keda").Get(ctx, "kedaorg-certs", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		kedaCA = s.Data["ca.crt"]
		a, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(kedaCA) > 0 && bytes.Equal(a.Spec.CABundle, kedaCA), fmt.Sprintf("ca.crt %d bytes, caBundle %d bytes", len(kedaCA), len(a.Spec.CABundle))
	})
	t.Logf("KEDA's operator (cert rotation on) restarted %d time(s) after writing its Secret; its CA is the APIService's caBundle", k.OperatorRestarts())

	// Our release beside it, forwarding to KEDA's metrics server with the CA that verifies it, from a Secret.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "custom-metrics"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(k.CACertFile())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Secrets("custom-metrics").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "keda-ca"}, Data: map[string][]byte{"ca.crt": caPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	values := kedaHelmValues(t, port, k.MetricsServerURL())
	if out, err := runHelm(t, kc, "install", "promql-adapter", filepath.Join(root, "charts/promql-adapter"), "--namespace", "custom-metrics", "-f", values); err != nil {
		t.Fatalf("our release beside KEDA's: %v", err)
	} else if strings.Contains(out, "conflict") {
		t.Fatalf("helm install: %s", out)
	}
	ext, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ext.Annotations["meta.helm.sh/release-name"] != "keda" {
		t.Fatalf("after both installs the external APIService should still be KEDA's release's: %v", ext.Annotations)
	}
	runBesideAdapter(ctx, t, cl, kube, "keda-helm-adapter.log")
	var ca []byte
	eventually(t, 90*time.Second, "the Secret of tls.mode controller", func() (bool, string) {
		s, err := kube.CoreV1().Secrets("custom-metrics").Get(ctx, "promql-adapter-tls", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ca = s.Data["ca.crt"]
		return len(ca) > 0, fmt.Sprintf("keys %d", len(s.Data))
	})
	held := func(a *apiregv1.APIService) bool {
		return a.Spec.Service != nil && a.Spec.Service.Namespace == "custom-metrics" && a.Spec.Service.Name == "promql-adapter" &&
			bytes.Equal(a.Spec.CABundle, ca)
	}
	eventually(t, 60*time.Second, "the external APIService points at our Service", func() (bool, string) {
		a, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return a.Spec.Service != nil && a.Spec.Service.Namespace == "custom-metrics", fmt.Sprintf("%+v", a.Spec.Service)
	})

	// KEDA's chart as it is: the operator patches the caBundle. Who holds the APIService, over 60 s, and what
	// does an HPA's read of our own metric through kube-apiserver get meanwhile?
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	probe := probeExternal(ctx, kube)
	on := measureHold(ctx, t, agg, 60*time.Second, held, kedaCA, nil)
	onReads := probe()
	t.Logf("KEDA's apiServicePatching on (its default): %s; reads of our metric: %s", on, onReads)
	if on.kedaRewrites == 0 {
		t.Errorf("KEDA's operator with its default patching never rewrote the caBundle in %s: %s", on.window, on)
	}
	if on.maxRetake() > 10*time.Second {
		t.Errorf("with KEDA's patching on, a retake took %s, want within 10 s: %s", on.maxRetake(), on)
	}

	// The documented KEDA value: helm upgrade of KEDA's release, then its operator's rollout with the new arguments.
	// The upgrade also points the APIService back at KEDA's Service.
	off := []string{"--set", "certificates.operator.apiServicePatching.enabled=false"}
	switchOff := measureHold(ctx, t, agg, 20*time.Second, held, kedaCA, func() error {
		if _, err := runHelm(t, kc, append([]string{"upgrade", "keda", kedaChart, "--namespace", "keda", "--set", "revision=2"}, off...)...); err != nil {
			return err
		}
		args := kedaOperatorArgs(ctx, t, kube)
		if !slices.Contains(args, "--enable-apiservice-patching=false") {
			return fmt.Errorf("the upgraded Deployment's arguments lack --enable-apiservice-patching=false: %q", args)
		}
		return k.RestartOperator(ctx, args)
	})
	t.Logf("helm upgrade of KEDA's release with apiServicePatching.enabled=false and the operator's rollout: %s", switchOff)
	if !switchOff.heldAtEnd || switchOff.maxRetake() > 10*time.Second {
		t.Fatalf("after switching KEDA's patching off: %s", switchOff)
	}
	probe = probeExternal(ctx, kube)
	quiet := measureHold(ctx, t, agg, 60*time.Second, held, kedaCA, nil)
	quietReads := probe()
	t.Logf("KEDA's apiServicePatching off: %s; reads of our metric: %s", quiet, quietReads)
	if quiet.kedaRewrites != 0 || quiet.otherRewrites != 0 || quiet.held != quiet.window {
		t.Errorf("with KEDA's patching off, want no rewrite and the APIService ours the whole window: %s", quiet)
	}
	if quietReads.failed != 0 || quietReads.ok == 0 {
		t.Errorf("with KEDA's patching off, every read of our metric through kube-apiserver should succeed: %s", quietReads)
	}

	// helm upgrade of KEDA's release (a new revision): ours again within 10 s.
	upgrade := measureHold(ctx, t, agg, 15*time.Second, held, kedaCA, func() error {
		_, err := runHelm(t, kc, append([]string{"upgrade", "keda", kedaChart, "--namespace", "keda", "--set", "revision=3"}, off...)...)
		return err
	})
	t.Logf("helm upgrade of KEDA's release: %s", upgrade)
	if len(upgrade.retakes) == 0 || upgrade.maxRetake() > 10*time.Second || !upgrade.heldAtEnd || upgrade.kedaRewrites != 0 {
		t.Errorf("helm upgrade of KEDA's release: want the APIService rewritten once and ours again within 10 s: %s", upgrade)
	}

	// Both HPAs scale: KEDA's (a ScaledObject, its metric forwarded by us to KEDA's metrics server) and ours.
	kso, kours := "khb-so", "khb-ours"
	for _, n := range []string{kso, kours} {
		if _, err := kube.AppsV1().Deployments(ns).Create(ctx, kedaHelmWorkload(n), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dyn.Resource(scaledObjectGVR).Namespace(ns).Create(ctx, scaledObject(kso, kso, 1, 5), metav1.CreateOptions{}); err != nil {
		t.Fatalf("ScaledObject: %v", err)
	}
	h := hpa(kours, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue_messages_ready", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": kours}}},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(20, resource.DecimalSI)},
	}})
	if _, err := kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []string{kso, kours} {
			_ = st.Sim.SetQueue(ns, n, 0)
		}
	})
	eventually(t, 60*time.Second, "KEDA's operator creates keda-hpa-"+kso, func() (bool, string) {
		_, err := kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "keda-hpa-"+kso, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	for _, n := range []string{kso, kours} {
		if err := st.Sim.SetQueue(ns, n, 60); err != nil {
			t.Fatal(err)
		}
	}
	reps := func(name string) int32 {
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return ptr.Deref(d.Spec.Replicas, -1)
	}
	hpaOf := func(name string) string {
		h, err := kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		var b strings.Builder
		fmt.Fprintf(&b, "desired %d", h.Status.DesiredReplicas)
		for _, c := range h.Status.Conditions {
			fmt.Fprintf(&b, "; %s=%s %s", c.Type, c.Status, c.Message)
		}
		return b.String()
	}
	scaleStart := time.Now()
	eventually(t, 180*time.Second, "both Deployments at 3 replicas (60 messages, 20 per replica)", func() (bool, string) {
		a, b := reps(kso), reps(kours)
		return a == 3 && b == 3, fmt.Sprintf("%s %d (%s), %s %d (%s)", kso, a, hpaOf("keda-hpa-"+kso), kours, b, hpaOf(kours))
	})
	t.Logf("both scaled to 3 replicas %s after the queues grew", time.Since(scaleStart).Round(time.Second))
	// KEDA's metric, read as its HPA reads it, through the APIService we hold (KEDA's Service has no endpoints:
	// only promql-adapter's forward reaches KEDA's metrics server).
	body, err := kube.Discovery().RESTClient().Get().AbsPath("/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/s0-prometheus").
		Param("labelSelector", "scaledobject.keda.sh/name="+kso).DoRaw(ctx)
	if err != nil {
		t.Fatalf("KEDA's metric through kube-apiserver and promql-adapter: %v", err)
	}
	if !strings.Contains(string(body), `"metricName":"s0-prometheus"`) {
		t.Fatalf("KEDA's metric through promql-adapter: %s", body)
	}
	a, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
	if err != nil || !held(a) {
		t.Fatalf("the APIService after scaling: %v, held %v", err, err == nil && held(a))
	}
	t.Logf("s0-prometheus through promql-adapter: %s", body)
}

// kedaOperatorArgs are the arguments of the keda-operator Deployment of KEDA's release, less those a pod needs
// and a process on 127.0.0.1 cannot use: --leader-elect (kedarun runs one operator without it) and --cert-dir
// (kedarun's directory stands for the Secret's mount).
func kedaOperatorArgs(ctx context.Context, t *testing.T, kube kubernetes.Interface) []string {
	t.Helper()
	d, err := kube.AppsV1().Deployments("keda").Get(ctx, "keda-operator", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if a == "--leader-elect" || strings.HasPrefix(a, "--cert-dir=") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// kedaHelmValues are our chart's values beside KEDA's release, forwarding to KEDA's metrics server at url.
func kedaHelmValues(t *testing.T, port int, url string) string {
	t.Helper()
	v := map[string]any{
		"image":      map[string]any{"repository": "promql-adapter", "tag": "e2e"},
		"securePort": port,
		"service":    map[string]any{"type": "ExternalName", "externalName": "127.0.0.1", "port": port},
		"apiService": map[string]any{"ownedElsewhere": []string{externalAPIService}},
		"prometheus": map[string]any{"url": st.Prom.URL()},
		"forward": map[string]any{
			"external": []any{map[string]any{
				"url": url, "name": "keda", "catchAll": true, "caSecret": map[string]any{"name": "keda-ca"},
			}},
			"refreshInterval": "2s",
		},
	}
	return valuesFile(t, v)
}

// kedaHelmWorkload is a Deployment of one replica on kwok's node, labelled app=name.
func kedaHelmWorkload(name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:    localcluster.NodeName,
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:  []corev1.Container{{Name: "app", Image: "fake-image:latest"}},
				},
			},
		},
	}
}

// readStats counts reads of an external metric through kube-apiserver.
type readStats struct {
	ok, failed int
	lastErr    string
}

func (r readStats) String() string {
	s := fmt.Sprintf("%d ok, %d failed", r.ok, r.failed)
	if r.lastErr != "" {
		s += " (last: " + r.lastErr + ")"
	}
	return s
}

// probeExternal reads our metric queue_messages_ready{queue="khb-ours"} through kube-apiserver, as an HPA does,
// every 100 ms (each read bounded to 5 s) until the returned function is called; that returns the counts.
func probeExternal(ctx context.Context, kube kubernetes.Interface) func() readStats {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan readStats, 1)
	go func() {
		var r readStats
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- r
				return
			case <-tick.C:
			}
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := kube.Discovery().RESTClient().Get().AbsPath("/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/queue_messages_ready").
				Param("labelSelector", "queue=khb-ours").DoRaw(rctx)
			rcancel()
			switch {
			case ctx.Err() != nil:
			case err != nil:
				r.failed++
				r.lastErr = err.Error()
			default:
				r.ok++
			}
		}
	}()
	return func() readStats {
		cancel()
		return <-done
	}
}

// holdStats is what a watch of the external APIService saw over a window.
type holdStats struct {
	window, held  time.Duration
	kedaRewrites  int // changes that took it from us and left KEDA's CA in caBundle
	otherRewrites int // other changes that took it from us (e.g. helm upgrade's spec.service)
	retakes       []time.Duration
	heldAtEnd     bool
}

func (s holdStats) maxRetake() time.Duration {
	var m time.Duration
	for _, r := range s.retakes {
		m = max(m, r)
	}
	return m
}

func (s holdStats) String() string {
	r := slices.Clone(s.retakes)
	sort.Slice(r, func(i, j int) bool { return r[i] < r[j] })
	med := time.Duration(0)
	if len(r) > 0 {
		med = r[len(r)/2]
	}
	return fmt.Sprintf("ours %.1f%% of %s; %d rewrites by KEDA's operator, %d others; %d retakes, median %s, max %s; ours at the end: %v",
		100*s.held.Seconds()/s.window.Seconds(), s.window.Round(time.Millisecond), s.kedaRewrites, s.otherRewrites, len(r),
		med.Round(time.Microsecond), s.maxRetake().Round(time.Microsecond), s.heldAtEnd)
}

// measureHold watches the external APIService for window (from the watch's start) and accounts who holds it:
// each watch event is stamped as it arrives, while action (if any) runs.
func measureHold(ctx context.Context, t *testing.T, agg aggregator.Interface, window time.Duration, held func(*apiregv1.APIService) bool, kedaCA []byte, action func() error) holdStats {
	t.Helper()
	a, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := agg.ApiregistrationV1().APIServices().Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", externalAPIService).String(), ResourceVersion: a.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	type seen struct {
		at time.Time
		a  *apiregv1.APIService
	}
	events := make(chan seen, 1<<16)
	go func() {
		defer close(events)
		for e := range w.ResultChan() {
			if a, ok := e.Object.(*apiregv1.APIService); ok {
				events <- seen{time.Now(), a}
			}
		}
	}()
	start := time.Now()
	end := start.Add(window)
	if action != nil {
		if err := action(); err != nil {
			t.Fatal(err)
		}
	}
	s := holdStats{window: window}
	state, last := held(a), start
	var lost time.Time
	if !state {
		lost = start
	}
	timer := time.NewTimer(time.Until(end))
	defer timer.Stop()
	observe := func(e seen) {
		if e.at.After(end) {
			return
		}
		if state {
			s.held += e.at.Sub(last)
		}
		last = e.at
		h := held(e.a)
		switch {
		case state && !h:
			lost = e.at
			if bytes.Equal(e.a.Spec.CABundle, kedaCA) {
				s.kedaRewrites++
			} else {
				s.otherRewrites++
			}
		case !state && h:
			s.retakes = append(s.retakes, e.at.Sub(lost))
		}
		state = h
	}
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("the APIService's watch ended")
			}
			observe(e)
		case <-timer.C:
			// Events stamped before the end but not yet read.
			for drained := false; !drained; {
				select {
				case e, ok := <-events:
					if ok {
						observe(e)
					} else {
						drained = true
					}
				default:
					drained = true
				}
			}
			if state {
				s.held += end.Sub(last)
			}
			s.heldAtEnd = state
			return s
		}
	}
}
