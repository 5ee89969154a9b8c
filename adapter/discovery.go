package adapter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/promql-adapter/promql-adapter/naming"
)

// Discovery: the series names that discovery rules (and prometheus-adapter's series queries) list,
// kept while they are seen, and the catalog rebuilt from them.

// Discover lists the series names of every discovery rule once. A name stays served for maxAge
// after it was last seen, so a scrape gap never makes a metric disappear.
func (p *Provider) Discover(ctx context.Context, lookback, maxAge time.Duration) error {
	rules := p.rules.Load()
	now := p.opts.Now()
	var errs []error
	done := map[string]bool{}
	for _, t := range rules.Templates {
		key := DiscoveryKey(t)
		if done[key] {
			continue
		}
		done[key] = true
		where := ""
		if b := t.Backend(); b != "" {
			where = ", backend " + b
		}
		q, err := p.querier(t.Backend())
		if err != nil {
			errs = append(errs, fmt.Errorf("discover rule %d (%s%s): %w", t.RuleIndex, t.Series, where, err))
			continue
		}
		names, err := q.SeriesNames(ctx, t.Series, now.Add(-lookback))
		if err != nil {
			errs = append(errs, fmt.Errorf("discover rule %d (%s%s): %w", t.RuleIndex, t.Series, where, err))
			continue
		}
		p.mu.Lock()
		for _, n := range names {
			p.discovered[key+"\x00"+n] = now
		}
		p.listedOnce[key] = true
		p.mu.Unlock()
	}
	if rules.Series != nil {
		for _, q := range rules.Series.SeriesQueries() {
			listed, err := p.opts.Querier.Series(ctx, q, now.Add(-lookback))
			if err != nil {
				errs = append(errs, fmt.Errorf("list series %s: %w", q, err))
				continue
			}
			p.mu.Lock()
			for _, s := range listed {
				p.series[seriesKey(s)] = seenSeries{SeriesLabels: s, at: now}
			}
			p.listedOnce["series\x00"+q] = true
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	for k, seen := range p.discovered {
		if now.Sub(seen) > maxAge {
			delete(p.discovered, k)
		}
	}
	for k, s := range p.series {
		if now.Sub(s.at) > maxAge {
			delete(p.series, k)
		}
	}
	p.mu.Unlock()
	p.rebuild()
	return errors.Join(errs...)
}

func seriesKey(s naming.SeriesLabels) string {
	return s.Query + "\x00" + s.Name + "\x00" + strings.Join(s.Labels, ",")
}

// Discovered is a snapshot of what discovery keeps: the series names listed per discovery
// selector (sorted; keyed by DiscoveryKey), and the series listed for prometheus-adapter rules (sorted). Tools such as
// `check` use it to tell which rule yields which metric.
func (p *Provider) Discovered() (map[string][]string, []naming.SeriesLabels) {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := map[string][]string{}
	for key := range p.discovered {
		i := strings.LastIndexByte(key, 0)
		sel, name := key[:i], key[i+1:]
		names[sel] = append(names[sel], name)
	}
	for _, n := range names {
		sort.Strings(n)
	}
	series := make([]naming.SeriesLabels, 0, len(p.series))
	for _, s := range p.series {
		series = append(series, s.SeriesLabels)
	}
	sort.Slice(series, func(i, j int) bool { return seriesKey(series[i]) < seriesKey(series[j]) })
	return names, series
}

// RunDiscovery calls Discover every interval until ctx ends, logging failures. It costs nothing
// while no rule discovers, and picks up discovery rules that a reload adds.
func (p *Provider) RunDiscovery(ctx context.Context, interval, lookback, maxAge time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if p.HasDiscovery() {
			if err := p.Discover(ctx, lookback, maxAge); err != nil {
				klog.ErrorS(err, "metric discovery failed; keeping the metrics found before")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DiscoveryPending reports whether a discovery selector of the current rules has not been listed
// successfully yet: the lists may lack metrics that will be served (forwarding holds such names
// back rather than hand them to an upstream).
func (p *Provider) DiscoveryPending() bool {
	return p.cat.Load().pending
}

// HasDiscovery reports whether any rule discovers its metrics, which may be listed only later.
func (p *Provider) HasDiscovery() bool {
	r := p.rules.Load()
	return len(r.Templates) > 0 || r.Series != nil
}
