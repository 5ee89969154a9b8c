package adapter

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	yaml "go.yaml.in/yaml/v2"
	"golang.org/x/sync/singleflight"

	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/querylimit"
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

// LabelQuerier is a Querier that can decode one label of each sample only, which is cheaper.
type LabelQuerier interface {
	// QueryLabel runs an instant query; each sample keeps label's value, its value and timestamp.
	// The result may be shared between callers and must not be changed.
	QueryLabel(ctx context.Context, query, label string) ([]Sample, error)
}

// PrometheusConfig says how to reach Prometheus.
type PrometheusConfig struct {
	URL     string                  // base URL, e.g. http://prometheus.monitoring.svc:9090
	HTTP    config.HTTPClientConfig // TLS, bearer token, basic auth, headers, proxy
	Timeout time.Duration           // bound on every query
	// DiscoveryTimeout bounds each discovery call (names, label names); default 30 s.
	DiscoveryTimeout time.Duration
	// Compression asks Prometheus for gzip answers: less traffic across a network for more CPU on
	// both sides (off, the default, is cheaper on loopback and within a node).
	Compression bool
	// Verb is the HTTP method of queries and discovery calls: POST (also when empty) falls back
	// to GET, for good, once Prometheus answers a POST with 405 or 501; GET sends every call by GET.
	Verb string
	// Limit bounds the queries in flight and waiting; nil does not limit. Discovery calls,
	// which run in the background at an interval, are not limited.
	Limit *querylimit.Limiter
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
	api      promv1.API
	http     *http.Client
	queryURL string
	gzip     bool
	timeout  time.Duration
	// discoveryTimeout bounds the listing of names and label names, which at many series
	// takes Prometheus longer than a query.
	discoveryTimeout time.Duration
	group            singleflight.Group
	metrics          *Metrics
	verb             *verbTransport
	limit            *querylimit.Limiter
}

// NewPromClient builds a client from cfg; metrics may be nil.
func NewPromClient(cfg PrometheusConfig, metrics *Metrics) (*PromClient, error) {
	if cfg.URL == "" {
		return nil, errors.New("prometheus URL is required")
	}
	base, err := config.NewRoundTripperFromConfig(cfg.HTTP, "promql-adapter")
	if err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	rt, err := newVerbTransport(base, cfg.Verb)
	if err != nil {
		return nil, err
	}
	client, err := promapi.NewClient(promapi.Config{Address: cfg.URL, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus client for %s: %w", cfg.URL, err)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	dtimeout := cfg.DiscoveryTimeout
	if dtimeout <= 0 {
		dtimeout = 30 * time.Second
	}
	return &PromClient{api: promv1.NewAPI(client), http: &http.Client{Transport: rt}, queryURL: client.URL("/api/v1/query", nil).String(),
		gzip: cfg.Compression, timeout: timeout, discoveryTimeout: dtimeout, metrics: metrics, verb: rt, limit: cfg.Limit}, nil
}

// Query implements Querier. Concurrent identical queries share one request to Prometheus.
func (c *PromClient) Query(ctx context.Context, query string) (model.Vector, error) {
	samples, err := c.query(ctx, query, "", true)
	if err != nil {
		return nil, err
	}
	vec := make(model.Vector, len(samples))
	for i, s := range samples {
		vec[i] = &model.Sample{Metric: s.Labels, Value: model.SampleValue(s.Value), Timestamp: s.Timestamp}
	}
	return vec, nil
}

// QueryLabel implements LabelQuerier: only label's value is decoded of each sample's labels.
// Concurrent identical queries share one request; the result is shared and must not be changed.
func (c *PromClient) QueryLabel(ctx context.Context, query, label string) ([]Sample, error) {
	return c.query(ctx, query, label, false)
}

func (c *PromClient) query(ctx context.Context, query, label string, all bool) ([]Sample, error) {
	key := "1\x00" + query
	if !all {
		key = "0" + label + "\x00" + query
	}
	ch := c.group.DoChan(key, func() (any, error) {
		// Detached from any one caller, so a caller that gives up does not fail the others;
		// the timeout still bounds it, the wait for a query slot included.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		release, err := c.limit.Acquire(qctx)
		if err != nil {
			return nil, err
		}
		defer release()
		start := time.Now()
		samples, stats, err := c.instant(qctx, query, label, all)
		took := time.Since(start)
		c.metrics.observeQuery(took, err)
		if rule, backend := ruleOf(ctx); err == nil {
			c.metrics.observeRuleQuery(rule, backend, took, stats)
		}
		if err != nil {
			return nil, c.wrap(err)
		}
		return samples, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("prometheus query: %w", ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]Sample), nil
	}
}

// instant runs /api/v1/query (POST, as the Prometheus client does; c.verb turns it into a GET with
// --prometheus-verb=GET or after a 405 or 501) and stream-decodes the answer.
// Errors are the Prometheus client's own *promv1.Error, so they read and classify the same.
func (c *PromClient) instant(ctx context.Context, query, label string, all bool) ([]Sample, QueryStats, error) {
	form := url.Values{}
	form.Set("query", query)
	form.Set("stats", "all") // Prometheus's own cost of the query, per rule; other backends ignore it
	form.Set("time", strconv.FormatFloat(float64(time.Now().UnixMilli())/1e3, 'f', -1, 64))
	form.Set("timeout", c.timeout.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.queryURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, QueryStats{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, QueryStats{}, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
		resp.Body.Close()
	}()
	code := resp.StatusCode
	if code/100 != 2 && code != http.StatusBadRequest && code != http.StatusUnprocessableEntity {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		t, msg := promv1.ErrServer, fmt.Sprintf("server error: %d", code)
		if code/100 == 4 {
			t, msg = promv1.ErrClient, fmt.Sprintf("client error: %d", code)
		}
		return nil, QueryStats{}, &promv1.Error{Type: t, Msg: msg, Detail: string(body)}
	}
	body := io.Reader(resp.Body)
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, QueryStats{}, &promv1.Error{Type: promv1.ErrBadResponse, Msg: err.Error()}
		}
		defer zr.Close()
		body = zr
	}
	r, err := decodeQuery(body, label, all)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return nil, QueryStats{}, err
	case err != nil:
		return nil, QueryStats{}, &promv1.Error{Type: promv1.ErrBadResponse, Msg: err.Error()}
	case r.Status == "error":
		return nil, QueryStats{}, &promv1.Error{Type: promv1.ErrorType(r.ErrorType), Msg: r.Error}
	case code/100 != 2:
		return nil, QueryStats{}, &promv1.Error{Type: promv1.ErrBadResponse, Msg: "inconsistent body for response code"}
	}
	switch r.ResultType {
	case "vector":
		return r.Samples, r.Stats, nil
	case "scalar":
		if all {
			for i := range r.Samples {
				r.Samples[i].Labels = model.Metric{}
			}
		}
		return r.Samples, r.Stats, nil
	}
	return nil, QueryStats{}, fmt.Errorf("prometheus returned a %s, want a vector", r.ResultType)
}

// SeriesNames implements Querier with the label values API, so memory grows with names, not series.
func (c *PromClient) SeriesNames(ctx context.Context, selector string, since time.Time) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.discoveryTimeout)
	defer cancel()
	return c.names(ctx, selector, since)
}

func (c *PromClient) names(ctx context.Context, selector string, since time.Time) ([]string, error) {
	start := time.Now()
	vals, _, _, err := c.api.LabelValues(ctx, model.MetricNameLabel, []string{selector}, since, time.Now())
	c.metrics.observeQuery(time.Since(start), err)
	if err != nil {
		return nil, c.wrapDiscovery(err)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out, nil
}

// Series implements Querier without listing series: the names through the label values API
// (unless the selector names one), then the label names of each name's series through the labels
// API, both with match[]. So Prometheus answers from its index and the adapter's memory grows
// with names, not series. A name whose series carry different label sets gets their union.
func (c *PromClient) Series(ctx context.Context, selector string, since time.Time) ([]naming.SeriesLabels, error) {
	ctx, cancel := context.WithTimeout(ctx, c.discoveryTimeout)
	defer cancel()
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(selector)
	if err != nil {
		return nil, &QueryError{Err: fmt.Errorf("series selector %q: %w", selector, err), Bad: true}
	}
	var names []string
	named := false
	for _, m := range ms {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			names, named = []string{m.Value}, true
		}
	}
	if !named {
		if names, err = c.names(ctx, selector, since); err != nil {
			return nil, err
		}
	}
	out := make([]naming.SeriesLabels, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4) // a few at a time: Prometheus serves requests too
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			one := ms
			if !named {
				one = append(slices.Clone(ms), &labels.Matcher{Type: labels.MatchEqual, Name: model.MetricNameLabel, Value: name})
			}
			match := (&parser.VectorSelector{LabelMatchers: one}).String()
			start := time.Now()
			lnames, _, _, err := c.api.LabelNames(ctx, []string{match}, since, time.Now())
			c.metrics.observeQuery(time.Since(start), err)
			if err != nil {
				errs[i] = c.wrapDiscovery(err)
				return
			}
			sl := naming.SeriesLabels{Query: selector, Name: name}
			for _, l := range lnames {
				if l != model.MetricNameLabel {
					sl.Labels = append(sl.Labels, string(l))
				}
			}
			slices.Sort(sl.Labels)
			out[i] = sl
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// A name with no series left in the window has no label names: nothing to serve for it.
	return slices.DeleteFunc(out, func(s naming.SeriesLabels) bool { return len(s.Labels) == 0 }), nil
}

// wrapDiscovery is wrap with the discovery timeout named.
func (c *PromClient) wrapDiscovery(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &QueryError{Err: fmt.Errorf("no answer within %s (the discovery timeout): %w", c.discoveryTimeout, err)}
	}
	return c.wrap(err)
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
		case strings.HasSuffix(perr.Msg, ": 414"):
			more += c.verb.tooLongHint()
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

// ruleKey carries, in a query's context, the rule that asked for it.
type ruleKey struct{}

type ruleRef struct{ rule, backend string }

// withRule marks ctx's queries as m's, for the per-rule cost metrics.
func withRule(ctx context.Context, m *naming.Metric) context.Context {
	backend := m.Backend
	if backend == "" {
		backend = naming.DefaultBackend
	}
	return context.WithValue(ctx, ruleKey{}, ruleRef{strconv.Itoa(m.RuleIndex), backend})
}

// ruleOf is the rule and backend withRule put in ctx ("" when none did).
func ruleOf(ctx context.Context) (rule, backend string) {
	r, _ := ctx.Value(ruleKey{}).(ruleRef)
	return r.rule, r.backend
}
