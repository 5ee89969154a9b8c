package server

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/pflag"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/forward"
)

// Defaults of the forwarding flags.
const (
	defaultForwardTimeout = 5 * time.Second
	defaultForwardRefresh = 10 * time.Second
)

// addForwardFlags registers the flags that forward the metrics we do not serve to other adapters.
func (o *Options) addForwardFlags(fs *pflag.FlagSet) {
	if o.ForwardTimeout == 0 {
		o.ForwardTimeout = defaultForwardTimeout
	}
	if o.ForwardRefreshInterval == 0 {
		o.ForwardRefreshInterval = defaultForwardRefresh
	}
	const keys = "URL[,key=value...]; keys: name, ca-file (CA verifying the upstream), cluster-ca (verify with the cluster CA), server-name, insecure-skip-tls-verify, catch-all (forward every metric nobody lists: KEDA lists no metric names), auth (serviceaccount: our ServiceAccount token, the default, only over https with a verified certificate; serviceaccount-insecure: also over http or insecure-skip-tls-verify, logged as a warning; cert with cert-file and key-file; token with token-file; none), identity (ours, the default, or impersonate: send the caller's identity as Impersonate-* headers). Repeatable; the first upstream that lists a metric answers it"
	fs.StringArrayVar(&o.ForwardExternal, "forward-external", o.ForwardExternal,
		"forward requests for external metrics we do not serve to the adapter that lists them (e.g. KEDA's metrics server): "+keys)
	fs.StringArrayVar(&o.ForwardCustom, "forward-custom", o.ForwardCustom,
		"forward requests for custom metrics we do not serve to the adapter that lists them (e.g. prometheus-adapter during a migration): "+keys)
	fs.DurationVar(&o.ForwardTimeout, "forward-timeout", o.ForwardTimeout,
		"bound on every call to an upstream adapter; a forwarded request that hits it gets a 503 naming the upstream")
	fs.DurationVar(&o.ForwardRefreshInterval, "forward-refresh-interval", o.ForwardRefreshInterval,
		"how often each upstream adapter's metric list is read in the background (discovery and routing never wait on an upstream)")
}

// forwardSpecs parses --forward-external and --forward-custom.
func (o *Options) forwardSpecs() ([]forward.Spec, error) {
	var specs []forward.Spec
	var errs []error
	for _, f := range []struct {
		api   string
		specs []string
	}{{forward.External, o.ForwardExternal}, {forward.Custom, o.ForwardCustom}} {
		for _, s := range f.specs {
			sp, err := forward.ParseSpec(f.api, s)
			errs = append(errs, err)
			specs = append(specs, sp)
		}
	}
	return specs, errors.Join(errs...)
}

// validateForward checks the forwarding flags without I/O.
func (o *Options) validateForward() error {
	if len(o.ForwardExternal)+len(o.ForwardCustom) == 0 {
		return nil
	}
	_, err := o.forwardSpecs()
	errs := []error{err}
	if len(o.ForwardExternal) > 0 && o.APIs != nil && !slices.Contains(o.APIs, APIExternal) {
		errs = append(errs, errors.New("--forward-external needs external in --apis"))
	}
	if len(o.ForwardCustom) > 0 && o.APIs != nil && !slices.Contains(o.APIs, APICustom) {
		errs = append(errs, errors.New("--forward-custom needs custom in --apis"))
	}
	if o.ForwardTimeout < 0 || o.ForwardRefreshInterval < 0 {
		errs = append(errs, errors.New("--forward-timeout and --forward-refresh-interval must be positive"))
	}
	return errors.Join(errs...)
}

// installForwarding makes cm and em list the upstreams' metrics too, and cfg route the requests for
// them to the upstreams after our authentication and authorization. It returns the forwarder (nil
// when no upstream is given), to be installed on the server with startForwarding.
func installForwarding(o *Options, cfg *genericapiserver.RecommendedConfig, kubeConfig *rest.Config, p *adapter.Provider, cm *cmprovider.CustomMetricsProvider, em *cmprovider.ExternalMetricsProvider) (*forward.Forwarder, error) {
	specs, err := o.forwardSpecs()
	if err != nil || len(specs) == 0 {
		return nil, err
	}
	reg := o.Registerer
	if reg == nil {
		reg = legacyregistry.Registerer()
	}
	timeout := o.ForwardTimeout
	if timeout <= 0 {
		timeout = defaultForwardTimeout
	}
	fwd, err := forward.New(p, specs, kubeConfig, timeout, reg)
	if err != nil {
		return nil, fmt.Errorf("forwarding: %w", err)
	}
	if *cm != nil {
		*cm = fwd.Custom(*cm)
	}
	if *em != nil {
		*em = fwd.External(*em)
	}
	// The API handler DefaultBuildHandlerChain receives runs after authentication, impersonation
	// and authorization: only what the caller may get is forwarded.
	cfg.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		return genericapiserver.DefaultBuildHandlerChain(fwd.Wrap(h), c)
	}
	return fwd, nil
}

// startForwarding reads the upstreams' metric lists in the background once the server runs, and
// serves their state at /readyz/forward.
func startForwarding(o *Options, s *genericapiserver.GenericAPIServer, fwd *forward.Forwarder) error {
	if fwd == nil {
		return nil
	}
	every := o.ForwardRefreshInterval
	if every <= 0 {
		every = defaultForwardRefresh
	}
	s.Handler.NonGoRestfulMux.Handle("/readyz/forward", fwd)
	return s.AddPostStartHook("forward-upstream-lists", func(ctx genericapiserver.PostStartHookContext) error {
		go fwd.Run(ctx, every)
		return nil
	})
}
