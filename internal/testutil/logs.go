package testutil

import (
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
)

// Logs holds klog's structured lines written while a test runs.
type Logs struct {
	mu    sync.Mutex
	lines []string
}

// CaptureLogs sends klog's output to a Logs until the test ends.
func CaptureLogs(t testing.TB) *Logs {
	l := &Logs{}
	klog.SetLogger(funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{}))
	t.Cleanup(klog.ClearLogger)
	return l
}

// String returns the lines so far, one per line.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// Drain returns the lines so far and forgets them.
func (l *Logs) Drain() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := strings.Join(l.lines, "\n")
	l.lines = nil
	return out
}

// Count counts the lines that contain every one of substrings.
func (l *Logs) Count(substrings ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
line:
	for _, s := range l.lines {
		for _, sub := range substrings {
			if !strings.Contains(s, sub) {
				continue line
			}
		}
		n++
	}
	return n
}
