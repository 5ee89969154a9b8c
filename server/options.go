// Package server wires the adapter into a custom-metrics API server: flags, clients,
// authentication, health checks and telemetry. It holds no metric logic.
package server

import (
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"net"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"github.com/spf13/pflag"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/cmd/options"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/backends"
)

// Options are the adapter's command-line settings.
type Options struct {
	// Server holds the generic API server flags: serving, delegated authn/authz, audit.
	Server *options.CustomMetricsAdapterServerOptions

	RulesFile        string
	RulesFormat      string // auto, native or prometheus-adapter
	Strict           bool   // refuse a prometheus-adapter config with an unusable rule, as a native one is refused
	ListerKubeconfig string
	TrustLoopback    bool // local runs only: no delegated auth, loopback clients are trusted

	PrometheusURL          string
	PrometheusClientConfig string // file with a Prometheus http_config block
	PrometheusCAFile       string // shorthands for the common parts of that block
	PrometheusBearerFile   string
	PrometheusInsecure     bool
	PrometheusHeaders      []string // Name=Value
	PrometheusTimeout      time.Duration
	DiscoveryTimeout       time.Duration // bound on each discovery call, which takes longer than a query at many series
	PrometheusCompression  bool          // ask Prometheus for gzip answers
	// PrometheusVerb is the HTTP method of queries and discovery calls: POST (also when empty)
	// falls back to GET for good on a 405 or 501; GET sends every call by GET (--prometheus-verb).
	PrometheusVerb string
	// PrometheusMaxInFlight and PrometheusMaxQueue bound the queries running and waiting; past
	// them a request gets a 503 at once (0 in-flight: no limit).
	PrometheusMaxInFlight int
	PrometheusMaxQueue    int
	ResponseCompression   bool // gzip answers past 128 KiB to clients that accept it (k8s.io/apiserver's APIResponseCompression)

	RulesReloadInterval  time.Duration
	SeriesRelistInterval time.Duration
	SeriesMaxAge         time.Duration
	ClientQPS            float32
	ClientBurst          int
	InformerSyncTimeout  time.Duration

	pa paFlags // prometheus-adapter's flag names (paflags.go)
	// APIs are the API groups served (--apis: custom, external, resource); nil means custom and
	// external, plus resource when the rule file has resource rules.
	APIs []string

	// Forwarding of the metrics we do not serve to other adapters (server/forward.go).
	ForwardExternal        []string
	ForwardCustom          []string
	ForwardTimeout         time.Duration
	ForwardRefreshInterval time.Duration
	// Coalesce: one shared namespace-wide query for many requests (server/coalesce.go).
	Coalesce CoalesceOptions
	// APIService: the APIServices the leader claims and keeps ours, and the shared TLS Secret (server/apiservice.go).
	APIService APIServiceOptions
	// Authorizer, with --trust-loopback, decides instead of allowing every loopback client (tests; no flag).
	Authorizer authorizer.Authorizer

	// Registerer receives the adapter's own metrics; nil means the registry that /metrics serves
	// (k8s.io/component-base's legacyregistry, one per process). A second server in the same
	// process, as in tests, passes its own.
	Registerer prometheus.Registerer
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	o := &Options{
		Server:                options.NewCustomMetricsAdapterServerOptions(),
		PrometheusURL:         "http://127.0.0.1:9090",
		PrometheusTimeout:     5 * time.Second,
		PrometheusMaxInFlight: 20,
		PrometheusMaxQueue:    200,
		DiscoveryTimeout:      30 * time.Second,
		RulesReloadInterval:   time.Second,
		RulesFormat:           FormatAuto,
		SeriesRelistInterval:  time.Minute,
		SeriesMaxAge:          10 * time.Minute,
		ClientQPS:             50,
		ClientBurst:           100,
		InformerSyncTimeout:   adapter.DefaultSyncTimeout,
		Coalesce:              CoalesceOptions{MaxEntries: defaultCoalesceEntries},
	}
	o.Server.SecureServing.ServerCert.CertDirectory = "" // self-signed certs stay in memory unless --cert-dir is given
	// /debug/pprof and /debug/flags only when asked for (--profiling).
	o.Server.Features.EnableProfiling, o.Server.Features.EnableContentionProfiling = false, false
	// /livez and /readyz stay open (the generic server's default); /metrics and /readyz/rules need
	// delegated authorization, as on Kubernetes components.
	return o
}

// AddFlags registers every flag on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Server.AddFlags(fs)
	if f := fs.Lookup("enable-priority-and-fairness"); f != nil {
		f.Usage = "does nothing, and says so in the log when set: kube-apiserver in front of the adapter applies API Priority and Fairness (accepted for compatibility)"
	}
	fs.StringVar(&o.RulesFile, "config", o.RulesFile, "rule file (required)")
	fs.StringVar(&o.RulesFormat, "config-format", o.RulesFormat,
		"rule file format: auto (a prometheus-adapter config is recognised by its rules/externalRules/resourceRules), native or prometheus-adapter")
	fs.BoolVar(&o.Strict, "strict", o.Strict,
		"refuse a prometheus-adapter config in which any rule is unusable (as a native rule file always is); by default such a config is served as prometheus-adapter serves it: every usable rule, each unusable one logged, listed at /readyz/rules and counted in promql_adapter_rules_unusable, and the requests for its metrics failed with the reason")
	fs.DurationVar(&o.RulesReloadInterval, "config-reload-interval", o.RulesReloadInterval,
		"how often the rule file is checked for changes (a ConfigMap's symlink swap included); a valid change is applied, an invalid one is logged and the last good rules keep serving; 0 disables")
	fs.StringVar(&o.ListerKubeconfig, "lister-kubeconfig", o.ListerKubeconfig,
		"kubeconfig used to watch the objects metrics describe and to resolve resources; in-cluster config if empty (with --trust-loopback and no kubeconfig the adapter runs without a cluster)")
	fs.BoolVar(&o.TrustLoopback, "trust-loopback", false,
		"LOCAL RUNS ONLY: serve on 127.0.0.1 and trust every loopback client instead of delegating authentication and authorization to kube-apiserver")
	fs.StringVar(&o.PrometheusURL, "prometheus-url", o.PrometheusURL, "Prometheus (or Thanos, Mimir, VictoriaMetrics) HTTP API base URL")
	fs.StringVar(&o.PrometheusClientConfig, "prometheus-client-config", "",
		"file holding a Prometheus http_config block (tls_config, authorization, basic_auth, http_headers, proxy_url, ...)")
	fs.StringVar(&o.PrometheusCAFile, "prometheus-ca-file", "", "CA bundle that verifies Prometheus's serving certificate")
	fs.StringVar(&o.PrometheusBearerFile, "prometheus-token-file", "", "file holding a bearer token sent to Prometheus")
	fs.BoolVar(&o.PrometheusInsecure, "prometheus-insecure-skip-tls-verify", false, "do not verify Prometheus's serving certificate")
	fs.StringArrayVar(&o.PrometheusHeaders, "prometheus-header", nil, "Name=Value header sent to Prometheus, e.g. X-Scope-OrgID=tenant-a (repeatable)")
	fs.DurationVar(&o.PrometheusTimeout, "prometheus-timeout", o.PrometheusTimeout, "bound on every Prometheus query; a request that hits it gets a 503")
	fs.IntVar(&o.PrometheusMaxInFlight, "prometheus-max-inflight", o.PrometheusMaxInFlight,
		"queries that run against Prometheus at once (identical ones count once); more wait in a queue, within --prometheus-timeout; 0 means no limit")
	fs.IntVar(&o.PrometheusMaxQueue, "prometheus-max-queue", o.PrometheusMaxQueue,
		"queries that may wait for a --prometheus-max-inflight slot; past it a request gets a 503 at once saying the adapter is shedding load")
	fs.BoolVar(&o.PrometheusCompression, "prometheus-compression", false,
		"ask Prometheus for gzip-compressed answers: less traffic when Prometheus is far away, more CPU on both sides (leave off on loopback or within a node)")
	fs.BoolVar(&o.ResponseCompression, "response-compression", false,
		"gzip answers past 128 KiB (1,000-pod lists) for clients that accept it, as kube-apiserver does: 40x fewer bytes to kube-apiserver, but most of a large answer's CPU and a pooled 1 MiB writer per concurrent answer")
	fs.DurationVar(&o.DiscoveryTimeout, "discovery-timeout", o.DiscoveryTimeout,
		"bound on each discovery call to Prometheus (metric names, label names); discovery runs beside serving and never delays the rules' fixed metrics")
	fs.DurationVar(&o.SeriesRelistInterval, "series-relist-interval", o.SeriesRelistInterval, "how often discovery rules list series names")
	fs.DurationVar(&o.SeriesMaxAge, "series-max-age", o.SeriesMaxAge, "how long a discovered metric stays served after its series was last seen")
	fs.Float32Var(&o.ClientQPS, "client-qps", o.ClientQPS, "kube-apiserver client QPS (only informers and discovery use it; requests never list)")
	fs.IntVar(&o.ClientBurst, "client-burst", o.ClientBurst, "kube-apiserver client burst")
	o.addPrometheusAdapterFlags(fs)
	o.addForwardFlags(fs)
	o.addAPIServiceFlags(fs)
	o.addCoalesceFlags(fs)
	fs.StringSliceVar(&o.APIs, "apis", o.APIs,
		"API groups to serve, any of custom (custom.metrics.k8s.io), external (external.metrics.k8s.io), resource (metrics.k8s.io, kubectl top); default custom,external plus resource when the rule file has resource rules. Discovery lists only these")
	fs.DurationVar(&o.InformerSyncTimeout, "informer-sync-timeout", o.InformerSyncTimeout,
		"how long a request waits for an object cache's first sync before a 503 that names the cause (e.g. a missing list/watch permission)")
}

// Validate checks the flags that do not need I/O.
func (o *Options) Validate() error {
	var errs []error
	if err := o.normalizePrometheusAdapterFlags(); err != nil {
		errs = append(errs, err)
	}
	if o.RulesFile == "" {
		errs = append(errs, errors.New("--config is required"))
	}
	switch o.RulesFormat {
	case FormatAuto, FormatNative, FormatPrometheusAdapter:
	default:
		errs = append(errs, fmt.Errorf("--config-format %q: want auto, native or prometheus-adapter", o.RulesFormat))
	}
	if o.TrustLoopback {
		ip := o.Server.SecureServing.BindAddress
		if ip == nil || ip.IsUnspecified() {
			o.Server.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
		} else if !ip.IsLoopback() {
			errs = append(errs, fmt.Errorf("--trust-loopback needs a loopback --bind-address, not %s", ip))
		}
	} else {
		errs = append(errs, o.Server.Validate()...)
	}
	if o.SeriesRelistInterval <= 0 || o.SeriesMaxAge < o.SeriesRelistInterval {
		errs = append(errs, errors.New("--series-max-age must be at least --series-relist-interval, which must be positive"))
	}
	if _, err := o.headers(); err != nil {
		errs = append(errs, err)
	}
	if o.PrometheusMaxInFlight < 0 || o.PrometheusMaxQueue < 0 {
		errs = append(errs, fmt.Errorf("--prometheus-max-inflight (%d) and --prometheus-max-queue (%d) cannot be negative", o.PrometheusMaxInFlight, o.PrometheusMaxQueue))
	}
	if o.APIs != nil {
		errs = append(errs, validateAPIs(o.APIs))
	}
	errs = append(errs, o.validateForward(), o.validateAPIService())
	errs = append(errs, o.validateCoalesce())
	return errors.Join(errs...)
}

// headers parses --prometheus-header, keeping the names as written.
func (o *Options) headers() (map[string][]string, error) {
	h := map[string][]string{}
	for _, kv := range o.PrometheusHeaders {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--prometheus-header %q: want Name=Value", kv)
		}
		h[k] = append(h[k], v)
	}
	return h, nil
}

// PrometheusConfig builds the Prometheus connection from the flags; the shorthands override the file.
func (o *Options) PrometheusConfig() (adapter.PrometheusConfig, error) {
	httpCfg := config.DefaultHTTPClientConfig
	if o.PrometheusClientConfig != "" {
		var err error
		if httpCfg, err = adapter.LoadHTTPClientConfig(o.PrometheusClientConfig); err != nil {
			return adapter.PrometheusConfig{}, err
		}
	}
	if err := o.applyPrometheusAdapterAuth(&httpCfg); err != nil {
		return adapter.PrometheusConfig{}, err
	}
	if o.PrometheusCAFile != "" {
		httpCfg.TLSConfig.CAFile = o.PrometheusCAFile
	}
	if o.PrometheusInsecure {
		httpCfg.TLSConfig.InsecureSkipVerify = true
	}
	if o.PrometheusBearerFile != "" {
		httpCfg.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: o.PrometheusBearerFile}
	}
	h, err := o.headers()
	if err != nil {
		return adapter.PrometheusConfig{}, err
	}
	if len(h) > 0 {
		if httpCfg.HTTPHeaders == nil {
			httpCfg.HTTPHeaders = &config.Headers{Headers: map[string]config.Header{}}
		}
		for k, vs := range h {
			httpCfg.HTTPHeaders.Headers[k] = config.Header{Values: vs}
		}
	}
	if err := httpCfg.Validate(); err != nil {
		return adapter.PrometheusConfig{}, fmt.Errorf("prometheus client settings: %w", err)
	}
	return adapter.PrometheusConfig{URL: o.PrometheusURL, HTTP: httpCfg, Timeout: o.PrometheusTimeout, DiscoveryTimeout: o.DiscoveryTimeout, Compression: o.PrometheusCompression, Verb: o.PrometheusVerb}, nil
}

// backendDefaults are the flags' values for what a rule file's backend declaration leaves out.
func (o *Options) backendDefaults() backends.Defaults {
	return backends.Defaults{Timeout: o.PrometheusTimeout, DiscoveryTimeout: o.DiscoveryTimeout, MaxInFlight: o.PrometheusMaxInFlight,
		MaxQueue: o.PrometheusMaxQueue, Compression: o.PrometheusCompression, Verb: o.PrometheusVerb}
}
