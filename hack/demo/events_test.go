package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
)

// TestEventRow: promql-wake's and the HPA's events since the story began are rows of the table, with
// the seconds since then; older events and other components' are not.
func TestEventRow(t *testing.T) {
	begin := time.Date(2026, 12, 7, 6, 0, 0, 500_000_000, time.UTC)
	ev := func(component, reason, msg string, at time.Time) *corev1.Event {
		return &corev1.Event{Source: corev1.EventSource{Component: component}, Reason: reason, Message: msg, LastTimestamp: metav1.NewTime(at)}
	}
	for _, tc := range []struct {
		ev   *corev1.Event
		want string
	}{
		{ev("promql-wake", "ScaledToZero", "Deployment/web 1 → 0: idle for 15s", begin.Add(95*time.Second)),
			"     95s  ▶ promql-wake ScaledToZero: Deployment/web 1 → 0: idle for 15s"},
		{ev("horizontal-pod-autoscaler", "SuccessfulRescale", "New size: 3; reason:\n pods metric above target", begin.Add(20*time.Second)),
			"     20s  ▶ HPA SuccessfulRescale: New size: 3; reason: pods metric above target"},
		{&corev1.Event{ReportingController: "promql-wake", Reason: "Woken", Message: "Deployment/web 0 → 1: push", EventTime: metav1.NewMicroTime(begin.Add(130 * time.Second))},
			"    130s  ▶ promql-wake Woken: Deployment/web 0 → 1: push"},
		{ev("promql-wake", "Woken", "before the story", begin.Add(-time.Minute)), ""},
		{ev("horizontal-pod-autoscaler", "FailedGetPodsMetric", "in the first second", begin.Add(-400*time.Millisecond)),
			"      0s  ▶ HPA FailedGetPodsMetric: in the first second"},
		{ev("deployment-controller", "ScalingReplicaSet", "Scaled up", begin.Add(time.Second)), ""},
	} {
		got, ok := eventRow(begin, tc.ev)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("eventRow(%s %s) = %q, %v; want %q", tc.ev.Source.Component, tc.ev.Reason, got, ok, tc.want)
		}
	}
}

// TestPrintEvents: an event recorded after the watch began is printed once; one from before is not.
func TestPrintEvents(t *testing.T) {
	begin := time.Now()
	old := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "old"}, Source: corev1.EventSource{Component: "promql-wake"},
		Reason: "Woken", Message: "old", Count: 1, LastTimestamp: metav1.NewTime(begin.Add(-time.Hour))}
	kube := fake.NewClientset(old)
	var out strings.Builder
	sayMu.Lock()
	sayTo = &out
	sayMu.Unlock()
	defer func() { sayMu.Lock(); sayTo = os.Stdout; sayMu.Unlock() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := printEvents(ctx, kube, "demo", begin); err != nil {
		t.Fatal(err)
	}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "new"}, Source: corev1.EventSource{Component: "promql-wake"},
		Reason: "ScaledToZero", Message: "Deployment/web 1 → 0", Count: 1, LastTimestamp: metav1.NewTime(begin.Add(2 * time.Second))}
	if _, err := kube.CoreV1().Events("demo").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	printed := func() string { sayMu.Lock(); defer sayMu.Unlock(); return out.String() }
	for deadline := time.Now().Add(5 * time.Second); printed() == "" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a second row would have come by now
	got := printed()
	if want := "      2s  ▶ promql-wake ScaledToZero: Deployment/web 1 → 0\n"; got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
}

// TestLogToFile: after logToFile, klog's lines (errors too) go to the file, none to stderr or stdout.
func TestLogToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in-process.log")
	var f *os.File
	out := captureStdout(t, func() {
		stderr := captureStderr(t, func() {
			var err error
			if f, err = logToFile(path); err != nil {
				t.Fatal(err)
			}
			klog.InfoS("wake", "target", "demo/web")
			klog.ErrorS(nil, "a failure")
			klog.Flush()
		})
		if stderr != "" {
			t.Errorf("stderr: %q", stderr)
		}
	})
	defer f.Close()
	if out != "" {
		t.Errorf("stdout: %q", out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"wake" target="demo/web"`) || !strings.Contains(string(b), `"a failure"`) {
		t.Errorf("%s holds %q", path, b)
	}
}

// captureStdout returns what f printed on os.Stdout; f must print from its own goroutine only.
func captureStdout(t *testing.T, f func()) string { return capture(t, &os.Stdout, f) }

// captureStderr returns what f printed on os.Stderr.
func captureStderr(t *testing.T, f func()) string { return capture(t, &os.Stderr, f) }

func capture(t *testing.T, file **os.File, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := *file
	*file = w
	done := make(chan string)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				done <- b.String()
				return
			}
		}
	}()
	f()
	*file = saved
	w.Close()
	return <-done
}
