//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
	"github.com/promql-adapter/promql-adapter/internal/stack"
	"github.com/promql-adapter/promql-adapter/wake"
)

// The target TestE2EWakeLeaderLabel pushes to.
var leaderPush = queueTarget("leaderpush")

// TestE2EWakeLeaderLabel: two promql-wake replicas (processes behind kwok pods' addresses, with the
// chart's --leader-pod-label, RBAC and ValidatingAdmissionPolicy from deploy/) and the chart's push
// Service, which selects the leader label. Both replicas are Ready, the Service's endpoints hold only
// the leader, a label left on a standby's pod is cleared when it starts; the leader is killed (SIGKILL:
// no release, no cleanup), and within a bounded time the endpoints hold only the new leader and a push
// through them is accepted. The ServiceAccount's patch on pods can change nothing but that label.
func TestE2EWakeLeaderLabel(t *testing.T) {
	ctx := context.Background()
	const key, lease, port = wake.DefaultLeaderPodLabel, "wake-leader-e2e", 8443
	ans := stack.AdapterNamespace
	selector := map[string]string{"app.kubernetes.io/name": "promql-wake", "app.kubernetes.io/instance": "promql-adapter"}
	pods := st.Kube.CoreV1().Pods(ans)

	if err := st.CreateWorkload(ctx, leaderPush, 0); err != nil {
		t.Fatal(err)
	}
	h := queueHPA("leaderpush", map[string]string{wake.AnnotationIdleAfter: "10m"})
	h.Spec.MinReplicas = ptr.To[int32](1)
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "promql-wake-leader-e2e", Namespace: ans},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app.kubernetes.io/name": "promql-wake", "app.kubernetes.io/instance": "promql-adapter", key: "true"},
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(port)}},
		},
	}
	if _, err := st.Kube.CoreV1().Services(ans).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer st.Kube.CoreV1().Services(ans).Delete(context.Background(), svc.Name, metav1.DeleteOptions{})

	// Two pods on kwok's node; b starts with the label, as if left there by a crash.
	names := []string{"wake-leader-a", "wake-leader-b"}
	ips := map[string]string{}
	for _, name := range append(slices.Clone(names), "not-wake") {
		labels := map[string]string{}
		if name != "not-wake" {
			for k, v := range selector {
				labels[k] = v
			}
		}
		if name == "wake-leader-b" {
			labels[key] = "true"
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ans, Labels: labels},
			Spec: corev1.PodSpec{NodeName: localcluster.NodeName, Containers: []corev1.Container{{
				Name: "promql-wake", Image: "promql-wake", Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: port}},
			}}},
		}
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	eventually(t, 30*time.Second, "the pods Running with IPs", func() (bool, string) {
		for _, name := range names {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if p.Status.PodIP == "" || !pnet.Contains(net.ParseIP(p.Status.PodIP)) {
				return false, name + " has no pod address yet"
			}
			ips[name] = p.Status.PodIP
		}
		return true, ""
	})

	// The replicas: processes on loopback, reached at their pods' addresses.
	procs := map[string]*stack.WakeProcess{}
	for _, name := range names {
		w, err := st.StartWakeProcess(ctx, name, "--leader-pod-label="+key, "--lease-name="+lease, "--lease-namespace="+ans)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		procs[name] = w
		fwd, err := pnet.Forward(net.JoinHostPort(ips[name], fmt.Sprint(port)), strings.TrimPrefix(w.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer fwd.Close()
		if name == names[0] {
			waitLeaseHolder(t, lease, name)
		}
	}
	labelled := func() []string {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: key + "=true"})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range list.Items {
			out = append(out, p.Name)
		}
		return out
	}
	// settled waits until the alive replicas are Ready, only leader's pod carries the label, the Service's
	// endpoints hold its address alone, and a push through them is accepted.
	settled := func(leader string, alive []string, timeout time.Duration) {
		t.Helper()
		eventually(t, timeout, leader+" alone behind the push Service", func() (bool, string) {
			if holder, err := leaseHolderOf(lease); err != nil || holder != leader {
				return false, fmt.Sprintf("lease holder %q %v", holder, err)
			}
			for _, name := range alive {
				if code, body := wakeGetURL(procs[name].URL + "/readyz"); code != http.StatusOK {
					return false, fmt.Sprintf("%s /readyz: %d %s", name, code, body)
				}
			}
			if got := labelled(); !slices.Equal(got, []string{leader}) {
				return false, fmt.Sprintf("labelled pods %v", got)
			}
			addrs, err := endpointAddresses(ctx, st.Kube, ans, svc.Name)
			if err != nil || !slices.Equal(addrs, []string{ips[leader]}) {
				return false, fmt.Sprintf("endpoints %v %v, want [%s]", addrs, err, ips[leader])
			}
			code, body := pushTo(fmt.Sprintf("http://%s/wake/%s/hpa/leaderpush", net.JoinHostPort(addrs[0], fmt.Sprint(port)), ns), procs[leader].Token)
			return code == http.StatusOK, fmt.Sprintf("push through the endpoints: %d %s", code, body)
		})
	}
	settled(names[0], names, 60*time.Second)
	t.Logf("both replicas Ready; endpoints hold only %s (%s); b's stale label cleared at start", names[0], ips[names[0]])
	if got := replicas(t, "leaderpush"); got < 1 {
		t.Errorf("leaderpush has %d replicas after an accepted push", got)
	}

	// What the ServiceAccount's patch may do (deploy/wake-rbac.yaml's ValidatingAdmissionPolicy).
	kc, err := st.ServiceAccountKubeconfig(ctx, ans, stack.WakeServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	for _, tc := range []struct{ pod, patch string }{
		{"wake-leader-b", `{"metadata":{"labels":{"app.kubernetes.io/name":"other"}}}`},
		{"wake-leader-b", `{"metadata":{"labels":{"` + key + `":"false"}}}`},
		{"wake-leader-b", `{"metadata":{"annotations":{"x":"y"}}}`},
		{"not-wake", `{"metadata":{"labels":{"` + key + `":"true"}}}`},
	} {
		_, err := sa.CoreV1().Pods(ans).Patch(ctx, tc.pod, types.MergePatchType, []byte(tc.patch), metav1.PatchOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "promql-wake may ") {
			t.Errorf("promql-wake's patch %s of %s: %v; want it refused by the ValidatingAdmissionPolicy", tc.patch, tc.pod, err)
		}
	}
	if _, err := sa.CoreV1().Pods(ans).Get(ctx, "wake-leader-b", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("promql-wake may get pods: %v", err)
	}

	// The leader crashes: its pod stays, labelled, until the new leader takes the label.
	killed := time.Now()
	procs[names[0]].Kill()
	settled(names[1], names[1:], 60*time.Second)
	t.Logf("leader %s killed: %s leads, holds the endpoints alone and took a push through them %s after the kill (lease duration 15s)",
		names[0], names[1], time.Since(killed).Round(100*time.Millisecond))
	if after := time.Since(killed); after > 30*time.Second {
		t.Errorf("the push Service moved to the new leader %s after the kill; want within 30s (lease duration 15s + retry 2s + endpoints)", after.Round(100*time.Millisecond))
	}
}

// waitLeaseHolder waits until id holds the Lease name.
func waitLeaseHolder(t *testing.T, name, id string) {
	t.Helper()
	eventually(t, 30*time.Second, id+" leads", func() (bool, string) {
		holder, err := leaseHolderOf(name)
		return err == nil && holder == id, fmt.Sprintf("holder %q %v", holder, err)
	})
}

func leaseHolderOf(name string) (string, error) {
	l, err := st.Kube.CoordinationV1().Leases(stack.AdapterNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return ptr.Deref(l.Spec.HolderIdentity, ""), nil
}

// endpointAddresses are the ready addresses of a Service's EndpointSlices, sorted.
func endpointAddresses(ctx context.Context, kube kubernetes.Interface, namespace, service string) ([]string, error) {
	list, err := kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if ptr.Deref(e.Conditions.Ready, false) {
				out = append(out, e.Addresses...)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// wakeGetURL GETs a URL: status and body.
func wakeGetURL(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, strings.TrimSpace(string(b[:n]))
}

// pushTo POSTs a push with a bearer token.
func pushTo(url, token string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, strings.TrimSpace(string(b[:n]))
}
