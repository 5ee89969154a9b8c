package adapter

import (
	"context"
	"net/http"
	"sort"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/metrics/pkg/apis/custom_metrics"

	"github.com/promql-adapter/promql-adapter/naming"
)

// maxNamedParts bounds the queries one request for a metric that needs object names is split into.
const maxNamedParts = 16

// namedInParts answers a request for a metric whose query must name every object
// (.LabelValuesByName) when the names are many: one query per part of the names that fits the regex
// cap, merged. Past maxNamedParts parts it answers 503 and says why.
func (p *Provider) namedInParts(ctx context.Context, m *naming.Metric, sel naming.Selection, names []string) (*custom_metrics.MetricValueList, error) {
	parts := splitNames(names, p.opts.MaxRegexBytes)
	if len(parts) > maxNamedParts {
		return nil, newStatus(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			"metric %q (rule %d): its metricsQuery reads .LabelValuesByName, so all %d selected %s must be named in the query; at %d bytes of names per query that takes %d queries, more than the %d allowed: select fewer objects, or raise the regex cap",
			m.Name, m.RuleIndex, len(names), m.Resource.GroupResource, p.opts.MaxRegexBytes, len(parts), maxNamedParts)
	}
	results := make([][]custom_metrics.MetricValue, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, part := range parts {
		g.Go(func() error {
			s := sel
			s.Names = part
			items, _, err := p.values(gctx, m, s, part, "")
			results[i] = items
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var items []custom_metrics.MetricValue
	for _, r := range results {
		items = append(items, r...)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].DescribedObject.Name < items[j].DescribedObject.Name })
	return &custom_metrics.MetricValueList{Items: items}, nil
}

// splitNames cuts names into runs whose name=~"a|b|..." matcher stays within maxBytes (each run
// has at least one name).
func splitNames(names []string, maxBytes int) [][]string {
	var parts [][]string
	start, size := 0, 0
	for i, n := range names {
		if i > start && size+len(n)+1 > maxBytes {
			parts = append(parts, names[start:i])
			start, size = i, 0
		}
		size += len(n) + 1
	}
	if start < len(names) {
		parts = append(parts, names[start:])
	}
	return parts
}
