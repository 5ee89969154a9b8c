//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/promql-adapter/promql-adapter/activator"
	"github.com/promql-adapter/promql-adapter/wake"
)

// TestE2EActivatorHostOwnership (review N1): namespace demo routes owned.example.com; a younger HPA in
// another namespace claims the same host and a longer prefix of it. Both claims are refused: requests
// to the host and to the prefix reach demo's pod, and the losing HPA gets a HostClaimRefused Event
// naming the host and the owning namespace.
func TestE2EActivatorHostOwnership(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const name, host, thiefNS = "ownweb", "owned.example.com", "e2e-thief"
	tg, sup := activatorWorkload(ctx, t, name, host, 0)
	owner, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// creationTimestamp has seconds: make the thief's claim younger for certain.
	time.Sleep(time.Until(owner.CreationTimestamp.Add(1100 * time.Millisecond)))

	if _, err := st.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: thiefNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Kube.CoreV1().Namespaces().Delete(context.Background(), thiefNS, metav1.DeleteOptions{})
	})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: thiefNS, Name: "thief"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "thief"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := st.Kube.CoreV1().Services(thiefNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	thief := hpa("thief", autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "activator_e2e_absent"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(1, resource.DecimalSI)},
	}})
	thief.Namespace = thiefNS
	thief.Annotations = map[string]string{
		wake.AnnotationEnabled:      "true",
		activator.AnnotationHosts:   host + "," + host + "/login",
		activator.AnnotationService: "thief",
	}
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(thiefNS).Create(ctx, thief, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	rig := startActivator(ctx, t, activator.Options{MaxWait: 60 * time.Second})
	waitAsleep(t, rig, sup, tg)
	for _, path := range []string{"/", "/login"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rig.url+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "hello from "+name+"-") {
			t.Fatalf("GET %s%s: %d %q, want the answer of %s/%s's pod", host, path, resp.StatusCode, b, ns, name)
		}
	}
	eventually(t, 30*time.Second, "a HostClaimRefused Event on the thief's HPA", func() (bool, string) {
		evs, err := st.Kube.CoreV1().Events(thiefNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=thief,reason=" + activator.ReasonHostClaimRefused})
		if err != nil {
			return false, err.Error()
		}
		var msgs []string
		seen := map[string]bool{}
		for _, e := range evs.Items {
			msgs = append(msgs, e.Message)
			if e.InvolvedObject.Kind == "HorizontalPodAutoscaler" && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Message, "host "+host+" is routed to namespace "+ns) {
				seen[strings.Fields(e.Message)[1]] = true // "route <host+prefix> refused: ..."
			}
		}
		return seen[host] && seen[host+"/login"], fmt.Sprintf("events %q", msgs)
	})
}
