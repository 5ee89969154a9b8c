package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// DefaultRetryRejected is how often a rejected rule file whose content has not changed is compiled
// again: only a change in the cluster (a CRD installed since) can make the same bytes compile.
const DefaultRetryRejected = 30 * time.Second

// ruleFile keeps the provider serving the newest valid version of the rule file. It reads the
// file by path on every check, so a ConfigMap's atomic symlink swap is seen like any edit.
type ruleFile struct {
	path     string
	format   string // FormatAuto, FormatNative or FormatPrometheusAdapter
	strict   bool   // refuse a prometheus-adapter config with an unusable rule
	resolver naming.Resolver
	metrics  *adapter.Metrics
	prepare  func(*naming.Rules) error // readies what a compiled rule set needs (its backends); an error rejects it
	apply    func(*naming.Rules)       // installs a valid rule set
	now      func() time.Time          // time.Now when nil (tests)

	mu         sync.Mutex
	hash       [sha256.Size]byte   // of the last content read, valid or not
	n          int                 // rules in the serving set
	loadedAt   time.Time           // when the serving set was loaded
	err        error               // why the newest content was rejected; nil when it is serving
	unusable   []pacompat.Unusable // rules of the serving set that answer no request (prometheus-adapter format)
	errAt      time.Time
	compiledAt time.Time // of the last compile, for the rejected-file backoff
}

func (f *ruleFile) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}

// load reads the file and, if its content changed and is valid, applies it. An invalid file
// leaves the last good rules serving; the first load returns the error so the server refuses to start.
func (f *ruleFile) load() (*naming.Rules, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.mu.Lock()
		f.hash = [sha256.Size]byte{} // the same content back is read as a change
		f.mu.Unlock()
		return nil, f.reject(fmt.Errorf("rule file: %w", err))
	}
	sum := sha256.Sum256(data)
	now := f.clock()
	f.mu.Lock()
	// Unchanged and serving: nothing to do. Unchanged and rejected: the same bytes compile the same
	// way unless the cluster changed (a CRD a rule names installed since), so they are compiled
	// again only DefaultRetryRejected after the last attempt, not on every check; a large
	// prometheus-adapter config would otherwise cost CPU every second until someone fixes it.
	same := sum == f.hash && f.err == nil && !f.loadedAt.IsZero()
	retryLater := sum == f.hash && f.err != nil && now.Sub(f.compiledAt) < DefaultRetryRejected
	lastErr := f.err
	f.hash = sum
	if !same && !retryLater {
		f.compiledAt = now
	}
	f.mu.Unlock()
	if same {
		return nil, nil
	}
	if retryLater {
		return nil, lastErr
	}
	rules, n, err := compileRules(f.path, f.format, data, f.resolver, f.strict)
	if err != nil {
		return nil, f.reject(err)
	}
	if f.prepare != nil {
		if err := f.prepare(rules); err != nil {
			return nil, f.reject(fmt.Errorf("%s: %w", f.path, err))
		}
	}
	unusable := pacompat.UnusableRules(rules)
	for _, u := range unusable {
		klog.ErrorS(u.Err, "prometheus-adapter rule unusable: serving the other rules; requests for its metrics fail with this error (--strict refuses the file instead)",
			"path", f.path, "rule", u.Rule(), "metricsListed", u.Discovers)
	}
	f.mu.Lock()
	f.n, f.loadedAt, f.err, f.unusable = n, now, nil, unusable
	f.mu.Unlock()
	f.metrics.RulesLoaded(n, true, now)
	f.metrics.RulesUnusable(len(unusable))
	if f.apply != nil {
		f.apply(rules)
	}
	return rules, nil
}

func (f *ruleFile) reject(err error) error {
	now := f.clock()
	f.mu.Lock()
	f.err, f.errAt = err, now
	f.mu.Unlock()
	f.metrics.RulesLoaded(0, false, now)
	return err
}

// watch checks the file every interval until ctx ends.
func (f *ruleFile) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string // a file rejected again for the same reason is logged once
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rules, err := f.load()
		switch {
		case err != nil && err.Error() == lastErr:
		case err != nil:
			lastErr = err.Error()
			klog.ErrorS(err, "rule file rejected; the last good rules keep serving", "path", f.path)
		case rules != nil:
			lastErr = ""
			klog.InfoS("rule file reloaded", "path", f.path, "metrics", len(rules.Metrics), "discoveryRules", len(rules.Templates))
		}
	}
}

// ServeHTTP reports the rule file's state at /readyz/rules. It always answers 200: a rejected
// file does not make the adapter unready, because it keeps serving the last good rules.
func (f *ruleFile) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "serving %d rules from %s, loaded at %s\n", f.n, f.path, f.loadedAt.UTC().Format(time.RFC3339))
	if len(f.unusable) > 0 {
		fmt.Fprintf(w, "%d rules are unusable; the others serve, requests for their metrics fail (--strict refuses such a file):\n", len(f.unusable))
		for _, u := range f.unusable {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	if f.err != nil {
		fmt.Fprintf(w, "the file changed at %s and was rejected; the rules above keep serving:\n%v\n", f.errAt.UTC().Format(time.RFC3339), f.err)
	}
}

// Rule file formats for --config-format.
const (
	FormatAuto              = "auto"
	FormatNative            = "native"
	FormatPrometheusAdapter = "prometheus-adapter"
)

// compileRules validates the content of a rule file in the given format; auto tells a
// prometheus-adapter config (rules, externalRules, resourceRules) from a native one (metrics).
// A prometheus-adapter config is loaded as prometheus-adapter loads it, unusable rules reported
// (pacompat.UnusableRules) rather than refused, unless strict; a native file is always strict.
func compileRules(path, format string, data []byte, resolver naming.Resolver, strict bool) (*naming.Rules, int, error) {
	if format == FormatPrometheusAdapter || (format != FormatNative && pacompat.Detect(data)) {
		load := pacompat.LoadLenient
		if strict {
			load = pacompat.Load
		}
		rules, warnings, err := load(data, resolver)
		if err != nil {
			return nil, 0, fmt.Errorf("%s (prometheus-adapter format): %w", path, err)
		}
		for _, w := range warnings {
			klog.InfoS("prometheus-adapter config", "path", path, "warning", w)
		}
		rules.Warnings = append(rules.Warnings, warnings...)
		return rules, len(rules.Series.SeriesQueries()), nil
	}
	cfg, err := naming.ParseConfig(data)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	rules, err := naming.Compile(cfg, resolver)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	for _, w := range rules.Warnings {
		klog.InfoS("rule file", "path", path, "warning", w)
	}
	return rules, len(cfg.Metrics), nil
}
