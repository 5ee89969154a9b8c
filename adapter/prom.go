package adapter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	yaml "go.yaml.in/yaml/v2"
	"golang.org/x/sync/singleflight"

	"github.com/promql-adapter/promql-adapter/naming"
)

// Querier runs PromQL against a Prometheus-compatible HTTP API.
type Querier interface {
	// Query runs an instant query at the current time.
	Query(ctx context.Context, query string) (model.Vector, error)
	// SeriesNames lists the metric names of the series matching selector seen since the given time.
	SeriesNames(ctx context.Context, selector string, since time.Time) ([]string, error)
	// Series lists the series matching selector seen since the given time, reduced to their
	// names and label names (what prometheus-adapter's rules need), each distinct shape once.
	Series(ctx context.Context, selector string, since time.Time) ([]naming.SeriesLabels, error)
}

// PrometheusConfig says how to reach Prometheus.
type PrometheusConfig struct {
	URL     string                  // base URL, e.g. http://prometheus.monitoring.svc:9090
	HTTP    config.HTTPClientConfig // TLS, bearer token, basic auth, headers, proxy
	Timeout time.Duration           // bound on every query
}

// LoadHTTPClientConfig reads a Prometheus HTTP client config file (the http_config
// block of a scrape config: tls_config, authorization, basic_auth, http_headers, proxy_url, ...).
func LoadHTTPClientConfig(path string) (config.HTTPClientConfig, error) {
	cfg := config.DefaultHTTPClientConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("prometheus client config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return cfg, fmt.Errorf("prometheus client config %s: %w", path, err)
	}
	cfg.SetDirectory(filepath.Dir(path))
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("prometheus client config %s: %w", path, err)
	}
	return cfg, nil
}

// PromClient is a Querier with a bounded timeout, collapsed identical queries and telemetry.
type PromClient struct {
	api     promv1.API
	timeout time.Duration
	group   singleflight.Group
	metrics *Metrics
}

// NewPromClient builds a client from cfg; metrics may be nil.
func NewPromClient(cfg PrometheusConfig, metrics *Metrics) (*PromClient, error) {
	if cfg.URL == "" {
		return nil, errors.New("prometheus URL is required")
	}
	rt, err := config.NewRoundTripperFromConfig(cfg.HTTP, "promql-adapter")
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	client, err := promapi.NewClient(promapi.Config{Address: cfg.URL, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", cfg.URL, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &PromClient{api: promv1.NewAPI(client), timeout: timeout, metrics: metrics}, nil
}

// Query implements Querier. Concurrent identical queries share one request to Prometheus.
func (c *PromClient) Query(ctx context.Context, query string) (model.Vector, error) {
	ch := c.group.DoChan(query, func() (any, error) {
		// Detached from any one caller, so a caller that gives up does not fail the others;
		// the timeout still bounds it.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		start := time.Now()
		val, _, _, err := c.api.Query(qctx, query, time.Now(), promv1.WithTimeout(c.timeout))
		c.metrics.observeQuery(time.Since(start), err)
		if err != nil {
			return nil, c.wrap(err)
		}
		switch v := val.(type) {
		case model.Vector:
			return v, nil
		case *model.Scalar:
			return model.Vector{{Metric: model.Metric{}, Value: v.Value, Timestamp: v.Timestamp}}, nil
		default:
			return nil, fmt.Errorf("prometheus returned a %s, want a vector", val.Type())
		}
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("prometheus query: %w", ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(model.Vector), nil
	}
}

// SeriesNames implements Querier with the label values API, so memory grows with names, not series.
func (c *PromClient) SeriesNames(ctx context.Context, selector string, since time.Time) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	vals, _, _, err := c.api.LabelValues(ctx, model.MetricNameLabel, []string{selector}, since, time.Now())
	c.metrics.observeQuery(time.Since(start), err)
	if err != nil {
		return nil, c.wrap(err)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out, nil
}

// Series implements Querier with the series API.
func (c *PromClient) Series(ctx context.Context, selector string, since time.Time) ([]naming.SeriesLabels, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	sets, _, _, err := c.api.Series(ctx, []string{selector}, since, time.Now())
	c.metrics.observeQuery(time.Since(start), err)
	if err != nil {
		return nil, c.wrap(err)
	}
	seen := map[string]bool{}
	var out []naming.SeriesLabels
	for _, set := range sets {
		sl := naming.SeriesLabels{Query: selector, Name: string(set[model.MetricNameLabel])}
		for k := range set {
			if k != model.MetricNameLabel {
				sl.Labels = append(sl.Labels, string(k))
			}
		}
		slices.Sort(sl.Labels)
		key := sl.Name + "{" + strings.Join(sl.Labels, ",")
		if !seen[key] {
			seen[key] = true
			out = append(out, sl)
		}
	}
	return out, nil
}

// wrap makes Prometheus errors say what went wrong and whether it was a timeout.
func (c *PromClient) wrap(err error) error {
	var perr *promv1.Error
	if errors.As(err, &perr) {
		if perr.Type == promv1.ErrBadData {
			return &QueryError{Err: err, Bad: true}
		}
		// The response body, which the client's message leaves out, often says why
		// (a proxy's page, Mimir's "no org id").
		var more string
		if d := strings.Join(strings.Fields(perr.Detail), " "); d != "" {
			if len(d) > 200 {
				d = d[:200] + "..."
			}
			more = ": " + d
		}
		switch {
		case strings.HasSuffix(perr.Msg, ": 401"):
			more += " (Prometheus refused the credentials: see authorization, basic_auth in --prometheus-client-config, or --prometheus-token-file)"
		case strings.HasSuffix(perr.Msg, ": 403"):
			more += " (forbidden: the credentials or the tenant header lack access)"
		}
		if more != "" {
			return &QueryError{Err: fmt.Errorf("%w%s", err, more)}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &QueryError{Err: fmt.Errorf("no answer within %s: %w", c.timeout, err)}
	}
	var unverified *tls.CertificateVerificationError
	if errors.As(err, &unverified) {
		return &QueryError{Err: fmt.Errorf("%w (give the CA that signed Prometheus's certificate: --prometheus-ca-file, or tls_config.ca_file in --prometheus-client-config)", err)}
	}
	return &QueryError{Err: err}
}

// QueryError is a failed Prometheus request.
type QueryError struct {
	Err error
	Bad bool // Prometheus rejected the query itself (bad_data), so retrying will not help
}

func (e *QueryError) Error() string { return "prometheus: " + e.Err.Error() }
func (e *QueryError) Unwrap() error { return e.Err }

// statusOf maps an HTTP response code from the Prometheus client to a short reason for telemetry.
func statusOf(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	var perr *promv1.Error
	if errors.As(err, &perr) {
		return string(perr.Type)
	}
	return "error"
}
