package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	gosync "sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// logToFile sends klog's output (the in-process promql-wake, promql-activator and client-go) to a
// new file at path instead of stderr, so that it does not interleave with the table.
func logToFile(path string) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("component log: %w", err)
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL"} {
		if err := fs.Set(k, v); err != nil {
			f.Close()
			return nil, fmt.Errorf("klog -%s: %w", k, err)
		}
	}
	klog.SetOutput(f)
	return f, nil
}

// eventSources are the components whose events the table shows: the 0↔1 decisions and the HPA's rescales.
var eventSources = map[string]string{
	"promql-wake":               "promql-wake",
	"promql-activator":          "promql-activator",
	"horizontal-pod-autoscaler": "HPA",
}

// eventRow is the table row of an event that happened since begin, or false for an event the table
// does not show (older, or from another component).
func eventRow(begin time.Time, ev *corev1.Event) (string, bool) {
	who, ok := eventSources[ev.Source.Component]
	if !ok {
		who, ok = eventSources[ev.ReportingController]
	}
	if !ok {
		return "", false
	}
	at := ev.LastTimestamp.Time
	if !ev.EventTime.IsZero() {
		at = ev.EventTime.Time
	}
	if at.IsZero() {
		at = ev.CreationTimestamp.Time
	}
	if at.Before(begin.Truncate(time.Second)) {
		return "", false
	}
	msg := strings.Join(strings.Fields(ev.Message), " ")
	// An event of the story's first second may carry a time just before begin (whole seconds): 0s.
	return fmt.Sprintf("%7.0fs  ▶ %s %s: %s", max(0, at.Sub(begin).Seconds()), who, ev.Reason, msg), true
}

// printEvents prints the namespace's events from begin on as rows of the table, until ctx ends.
func printEvents(ctx context.Context, kube kubernetes.Interface, namespace string, begin time.Time) error {
	list, err := kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	seen := map[string]int32{} // name → count printed, so that an event repeated (count+1) prints again
	for _, ev := range list.Items {
		seen[ev.Name] = ev.Count
	}
	w, err := kube.CoreV1().Events(namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.ResultChan():
				if !ok {
					return
				}
				ev, isEvent := e.Object.(*corev1.Event)
				if !isEvent || (e.Type != watch.Added && e.Type != watch.Modified) {
					continue
				}
				if n, printed := seen[ev.Name]; printed && n >= ev.Count {
					continue
				}
				seen[ev.Name] = ev.Count
				if row, ok := eventRow(begin, ev); ok {
					say("%s", row)
				}
			}
		}
	}()
	return nil
}

// sayMu keeps the table's lines whole: events print from their own goroutine.
var sayMu gosync.Mutex

// sayTo is where say prints: the terminal.
var sayTo io.Writer = os.Stdout
