//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promql-adapter/promql-adapter/internal/promrun"
	"github.com/promql-adapter/promql-adapter/wake"
)

// alerty sleeps on a signal that stays at zero; only a real alert can wake it.
var alerty = queueTarget("alerty")

// TestE2EAlertmanagerWakes: a Prometheus alert rule fires into a real Alertmanager, whose webhook
// receiver is promql-wake's push endpoint, and the sleeping target wakes.
func TestE2EAlertmanagerWakes(t *testing.T) {
	ctx := context.Background()
	if err := st.CreateWorkload(ctx, alerty, 2); err != nil {
		t.Fatal(err)
	}
	w, err := st.StartWake(ctx, "wake-am", wake.ControllerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	waitLeader(t, "wake-am")
	h := queueHPA("alerty", map[string]string{wake.AnnotationActivationMetric: "external:queue_messages_ready?queue=quiet"})
	if _, err := st.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	am, err := promrun.StartAlertmanager(ctx, promrun.AlertmanagerOptions{WorkDir: filepath.Join(dir, "alertmanager"), Config: fmt.Sprintf(`
route:
  receiver: promql-wake
  group_by: [namespace, deployment]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: promql-wake
  webhook_configs:
  - url: %s/alertmanager
    send_resolved: false
    http_config:
      authorization: {credentials: %s}
`, w.URL, w.Token)})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Stop()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(`
groups:
- name: wake
  interval: 1s
  rules:
  - alert: QueueWaiting
    expr: queue_messages_ready{queue="alerty"} > 0
    labels: {deployment: alerty}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	prom, err := promrun.Start(ctx, promrun.Options{
		WorkDir:         filepath.Join(dir, "prometheus"),
		Targets:         []promrun.Target{{Job: "loadsim", Address: strings.TrimPrefix(st.SimURL, "http://")}},
		RuleFiles:       []string{rules},
		AlertmanagerURL: am.URL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()

	waitSpecReplicas(t, "alerty", 0, 60*time.Second)
	if err := st.Sim.SetQueue(ns, "alerty", 5); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitSpecReplicas(t, "alerty", 1, 60*time.Second)
	t.Logf("queue > 0 → alert rule → Alertmanager → promql-wake → alerty 0 → 1 in %s", time.Since(start).Round(100*time.Millisecond))
	waitEvent(t, "alerty", "Woken: Deployment/alerty 0 → 1: alertmanager: QueueWaiting")
}
