// Package backends keeps a Prometheus client per backend that the rule file declares, beside the
// default one the --prometheus-* flags define. A reload rebuilds only the backends it changes, so
// the others keep their connections and query limits.
package backends

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/common/config"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/querylimit"
)

// Defaults are the settings a backend declaration leaves out: the --prometheus-* flags' values.
type Defaults struct {
	Timeout          time.Duration // --prometheus-timeout
	DiscoveryTimeout time.Duration // --discovery-timeout
	MaxInFlight      int           // --prometheus-max-inflight
	MaxQueue         int           // --prometheus-max-queue
	Compression      bool          // --prometheus-compression
	Verb             string        // --prometheus-verb
}

// Options configures a Set.
type Options struct {
	// Dir is the rule file's directory, against which relative clientConfig paths resolve.
	Dir      string
	Defaults Defaults
	// Metrics receives the clients' query telemetry; may be nil.
	Metrics *adapter.Metrics
	// Limits holds the limiters' metrics, one series per backend; nil leaves them unregistered.
	Limits *querylimit.Metrics
}

// Set is the default Querier and a client per declared backend. It is safe for concurrent use.
type Set struct {
	def  adapter.Querier
	opts Options

	updating sync.Mutex // one Update at a time
	mu       sync.RWMutex
	built    map[string]*backend
}

// backend is one built client and what it was built from.
type backend struct {
	spec         naming.Backend
	clientConfig []byte // the clientConfig file's content when built; nil without one
	client       *adapter.PromClient
}

// New returns a Set whose default backend is def and which has no declared backends yet.
func New(def adapter.Querier, opts Options) *Set {
	return &Set{def: def, opts: opts, built: map[string]*backend{}}
}

// Querier is the named backend's Querier; "" and naming.DefaultBackend are the default one.
func (s *Set) Querier(name string) (adapter.Querier, bool) {
	if name == "" || name == naming.DefaultBackend {
		return s.def, s.def != nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.built[name]
	if !ok {
		return nil, false
	}
	return b.client, true
}

// Update makes the declared backends specs: a backend whose declaration and clientConfig content
// are unchanged keeps its client, a new or changed one gets a new client (with a new limiter), one
// no longer declared is dropped. When any backend cannot be built, Update changes nothing and the
// error names the backend and what failed. Queries in flight finish on the client they started on.
func (s *Set) Update(specs []naming.Backend) error {
	s.updating.Lock()
	defer s.updating.Unlock()
	s.mu.RLock()
	current := s.built
	s.mu.RUnlock()

	next := make(map[string]*backend, len(specs))
	var fresh []string // backends given a limiter's series by this update
	var errs []error
	for _, spec := range specs {
		cc, err := s.readClientConfig(spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := current[spec.Name]; ok && reflect.DeepEqual(old.spec, spec) && bytes.Equal(old.clientConfig, cc) {
			next[spec.Name] = old
			continue
		}
		if _, ok := current[spec.Name]; !ok {
			fresh = append(fresh, spec.Name)
		}
		client, err := s.build(spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		next[spec.Name] = &backend{spec: spec, clientConfig: cc, client: client}
	}
	if len(errs) > 0 {
		for _, name := range fresh {
			s.opts.Limits.Forget(name)
		}
		return errors.Join(errs...)
	}
	s.mu.Lock()
	s.built = next
	s.mu.Unlock()
	for name := range current {
		if _, kept := next[name]; !kept {
			s.opts.Limits.Forget(name)
		}
	}
	return nil
}

// Names are the declared backends built now, sorted.
func (s *Set) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.built))
	for n := range s.built {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// clientConfigPath is spec's clientConfig file, resolved against the rule file's directory.
func (s *Set) clientConfigPath(spec naming.Backend) string {
	if spec.ClientConfig == "" || filepath.IsAbs(spec.ClientConfig) {
		return spec.ClientConfig
	}
	return filepath.Join(s.opts.Dir, spec.ClientConfig)
}

func (s *Set) readClientConfig(spec naming.Backend) ([]byte, error) {
	path := s.clientConfigPath(spec)
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backend %q: clientConfig: %w", spec.Name, err)
	}
	return data, nil
}

// build makes spec's client: its clientConfig, its headers over the file's, the flags' defaults
// for what it leaves out, and a limiter of its own.
func (s *Set) build(spec naming.Backend) (*adapter.PromClient, error) {
	fail := func(err error) error { return fmt.Errorf("backend %q: %w", spec.Name, err) }
	httpCfg := config.DefaultHTTPClientConfig
	if path := s.clientConfigPath(spec); path != "" {
		var err error
		if httpCfg, err = adapter.LoadHTTPClientConfig(path); err != nil {
			return nil, fail(fmt.Errorf("clientConfig: %w", err))
		}
	}
	if len(spec.Headers) > 0 {
		if httpCfg.HTTPHeaders == nil {
			httpCfg.HTTPHeaders = &config.Headers{Headers: map[string]config.Header{}}
		}
		for k, v := range spec.Headers {
			httpCfg.HTTPHeaders.Headers[k] = config.Header{Values: []string{v}}
		}
	}
	if err := httpCfg.Validate(); err != nil {
		return nil, fail(fmt.Errorf("client settings (clientConfig, headers): %w", err))
	}
	d := s.opts.Defaults
	cfg := adapter.PrometheusConfig{URL: spec.URL, HTTP: httpCfg, Timeout: d.Timeout, DiscoveryTimeout: d.DiscoveryTimeout, Compression: d.Compression, Verb: d.Verb}
	if spec.Timeout > 0 {
		cfg.Timeout = spec.Timeout
	}
	lim := querylimit.Config{MaxInFlight: d.MaxInFlight, MaxQueue: d.MaxQueue, Backend: spec.Name}
	if spec.MaxInFlight != nil {
		lim.MaxInFlight = *spec.MaxInFlight
	}
	if spec.MaxQueue != nil {
		lim.MaxQueue = *spec.MaxQueue
	}
	cfg.Limit = querylimit.New(lim, s.opts.Limits)
	client, err := adapter.NewPromClient(cfg, s.opts.Metrics)
	if err != nil {
		return nil, fail(err)
	}
	return client, nil
}
