package adapter

import (
	"context"
	"time"

	"github.com/prometheus/common/model"

	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/naming"
)

// freshness is how old a shared answer to m's namespace-wide query may be; 0 when m's answers are
// not shared: no cache, a rule that turns it off, or a query that must name its objects
// (.LabelValuesByName), whose namespace-wide form does not exist.
func (p *Provider) freshness(m *naming.Metric) time.Duration {
	if p.opts.Coalesce == nil || m.NeedsNames || (!m.External && m.NameLabel == "") {
		return 0
	}
	if m.Freshness != nil {
		return *m.Freshness
	}
	return p.opts.Freshness
}

// shared answers query from the coalescing cache: an answer whose query started at most bound
// before now, or the answer of one fetch shared by every concurrent caller. Never across backends
// or tenants: both are part of the key (no tenants today).
func (p *Provider) shared(ctx context.Context, backend, query, label string, bound time.Duration, fetch func(context.Context) ([]Sample, error)) ([]Sample, error) {
	arrived := p.opts.Now()
	key := coalesce.Key{Backend: backendKey(backend), Query: query, Label: label}
	samples, at, how, err := p.opts.Coalesce.Get(ctx, key, bound, fetch)
	if err != nil {
		return nil, err
	}
	p.opts.Metrics.coalesce(string(how), arrived.Sub(at))
	return samples, nil
}

// objectSamples runs m's query for an object metric, shared when sel names no objects and m's
// answers may be shared.
func (p *Provider) objectSamples(ctx context.Context, q Querier, m *naming.Metric, sel naming.Selection, query string) ([]Sample, error) {
	if bound := p.freshness(m); bound > 0 && sel.Names == nil {
		return p.shared(ctx, m.Backend, query, m.NameLabel, bound, func(ctx context.Context) ([]Sample, error) {
			return p.query(ctx, q, query, m.NameLabel)
		})
	}
	return p.query(ctx, q, query, m.NameLabel)
}

// externalSamples runs an external metric's query with every label of each sample, shared when
// m's answers may be shared.
func (p *Provider) externalSamples(ctx context.Context, q Querier, m *naming.Metric, query string) ([]Sample, error) {
	fetch := func(ctx context.Context) ([]Sample, error) {
		vec, err := q.Query(ctx, query)
		if err != nil {
			return nil, err
		}
		return fromVector(vec), nil
	}
	if bound := p.freshness(m); bound > 0 {
		return p.shared(ctx, m.Backend, query, "", bound, fetch)
	}
	return fetch(ctx)
}

func fromVector(vec model.Vector) []Sample {
	out := make([]Sample, len(vec))
	for i, s := range vec {
		out[i] = Sample{Labels: s.Metric, Value: float64(s.Value), Timestamp: s.Timestamp}
	}
	return out
}
