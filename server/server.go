package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/features"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	openapicommon "k8s.io/kube-openapi/pkg/common"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/dynamicmapper"
	generatedcore "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/core"
	generatedcm "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/custommetrics"
	generatedem "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/externalmetrics"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/promql-adapter/promql-adapter/adapter"
	"github.com/promql-adapter/promql-adapter/backends"
	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/querylimit"
	"github.com/promql-adapter/promql-adapter/resourcemetrics"
	resourceopenapi "github.com/promql-adapter/promql-adapter/resourcemetrics/openapi"
)

// Name is the API server's name in logs and OpenAPI.
const Name = "promql-adapter"

// LoadRules reads and validates a rule file; it returns the rules and how many the file holds.
func LoadRules(path string, resolver naming.Resolver) (*naming.Rules, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("rule file: %w", err)
	}
	return compileRules(path, FormatAuto, data, resolver, false)
}

// Run serves the metrics APIs until ctx ends. It refuses to start on an invalid rule file.
func Run(ctx context.Context, o *Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	reg := o.Registerer
	if reg == nil {
		reg = legacyregistry.Registerer()
	}
	metrics := adapter.NewMetrics(reg)

	var (
		resolver   naming.Resolver = naming.BuiltinResources()
		objects    adapter.Objects
		kubeConfig *rest.Config
	)
	if o.ListerKubeconfig != "" || !o.TrustLoopback {
		var err error
		if kubeConfig, err = clientConfig(o.ListerKubeconfig); err != nil {
			return err
		}
		kubeConfig.QPS, kubeConfig.Burst = o.ClientQPS, o.ClientBurst
		dc, err := discovery.NewDiscoveryClientForConfig(kubeConfig)
		if err != nil {
			return fmt.Errorf("discovery client: %w", err)
		}
		mapper, err := dynamicmapper.NewRESTMapper(dc, 5*time.Minute)
		if err != nil {
			return fmt.Errorf("resource discovery from kube-apiserver: %w", err)
		}
		mapper.RunUntil(ctx.Done())
		// A resource the mapper misses (a CRD installed after start) rereads discovery, at most every 10 s.
		resolver = &adapter.RefreshingResolver{Resolver: adapter.MapperResolver{Mapper: mapper}, Refresh: mapper.RegenerateMappings, MinInterval: 10 * time.Second}
		mc, err := metadata.NewForConfig(kubeConfig)
		if err != nil {
			return fmt.Errorf("metadata client: %w", err)
		}
		io := adapter.NewInformerObjects(ctx, mc, 0)
		io.SyncTimeout = o.InformerSyncTimeout
		objects = io
	} else {
		klog.InfoS("running without a cluster: built-in resources only, label selectors on objects are refused")
	}

	promCfg, err := o.PrometheusConfig()
	if err != nil {
		return err
	}
	limits := querylimit.NewMetrics(reg)
	promCfg.Limit = querylimit.New(querylimit.Config{MaxInFlight: o.PrometheusMaxInFlight, MaxQueue: o.PrometheusMaxQueue}, limits)
	prom, err := adapter.NewPromClient(promCfg, metrics)
	if err != nil {
		return err
	}
	// The rule file's backends: built before its rules apply, on every reload too.
	set := backends.New(prom, backends.Options{Dir: filepath.Dir(o.RulesFile), Defaults: o.backendDefaults(), Metrics: metrics, Limits: limits})

	rf := &ruleFile{path: o.RulesFile, format: o.RulesFormat, strict: o.Strict, resolver: resolver, metrics: metrics,
		prepare: func(r *naming.Rules) error { return set.Update(r.Backends) }}
	rules, err := rf.load()
	if err != nil {
		return err // refuse to start on an invalid file
	}
	warm(objects, rules)
	apis, err := resolveAPIs(o.APIs, rules.Resource != nil, objects != nil)
	if err != nil {
		return err
	}
	if !apis.resource && rules.Resource != nil {
		klog.InfoS("the rule file has resource rules, but --apis leaves out resource: metrics.k8s.io is not served", "apis", apis.String())
	}

	popts := adapter.Options{Querier: prom, Backends: set, Objects: objects, Metrics: metrics}
	o.coalescing(&popts)
	p := adapter.NewProvider(popts, rules)
	var rp *resourcemetrics.Provider
	if apis.resource {
		rp = resourcemetrics.NewProvider(prom, rules.Resource)
	}
	// Discovery runs beside serving, its first pass at once: the rules' fixed metrics are served
	// from the start, discovered ones as soon as they are listed.
	go p.RunDiscovery(ctx, o.SeriesRelistInterval, o.SeriesMaxAge, o.SeriesMaxAge)
	rf.apply = func(r *naming.Rules) {
		warm(objects, r)
		p.SetRules(r) // requests in flight finish with the rules they started with
		if rp != nil {
			rp.SetRules(r.Resource)
		}
		if p.HasDiscovery() {
			go func() { _ = p.Discover(ctx, o.SeriesMaxAge, o.SeriesMaxAge) }()
		}
	}
	if o.RulesReloadInterval > 0 {
		go rf.watch(ctx, o.RulesReloadInterval)
	}

	cl, err := newClaim(o, kubeConfig)
	if err != nil {
		return err
	}
	srv, err := newServer(o, kubeConfig, p, objects, rf, apis, cl)
	if err != nil {
		return err
	}
	if rp != nil {
		if err := installResourceMetrics(ctx, srv, kubeConfig, objects, rp); err != nil {
			return err
		}
	}
	cl.run(ctx)
	klog.InfoS("serving", "apis", apis.String(), "rules", o.RulesFile, "metrics", len(rules.Metrics), "discoveryRules", len(rules.Templates), "prometheus", o.PrometheusURL, "backends", set.Names(), "trustLoopback", o.TrustLoopback)
	return srv.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// warm starts the object caches for the resources rules describe.
func warm(objects adapter.Objects, rules *naming.Rules) {
	w, ok := objects.(*adapter.InformerObjects)
	if !ok {
		return
	}
	var res []naming.Resource
	for _, m := range rules.Metrics {
		if !m.External {
			res = append(res, m.Resource)
		}
	}
	for _, t := range rules.Templates {
		if r := t.Resource(); r.GroupResource.Resource != "" {
			res = append(res, r)
		}
	}
	w.Warm(res)
}

func clientConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --lister-kubeconfig and not in a cluster: %w", err)
		}
		return c, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--lister-kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// newServer builds the generic API server the way custom-metrics-apiserver's AdapterBase does,
// except that --trust-loopback replaces delegated authentication and authorization.
func newServer(o *Options, kubeConfig *rest.Config, p *adapter.Provider, objects adapter.Objects, rf *ruleFile, apis servedAPIs, cl *claim) (*apiserver.CustomMetricsAdapterServer, error) {
	so := o.Server
	if err := so.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("self-signed serving certificate: %w", err)
	}
	// k8s.io/apiserver gzips answers past 128 KiB by default; for the adapter that is most of a
	// 1,000-pod answer's CPU (BenchmarkRespond) and a 1 MiB writer per concurrent answer.
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{string(features.APIResponseCompression): o.ResponseCompression}); err != nil {
		return nil, fmt.Errorf("--response-compression: %w", err)
	}
	cfg := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	cfg.ClientConfig = kubeConfig
	if err := so.SecureServing.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return nil, err
	}
	cl.install(cfg) // --tls-secret: serve the shared Secret's certificate
	if o.TrustLoopback {
		cfg.Authentication.Authenticator = loopbackAuthenticator{}
		cfg.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
		if o.Authorizer != nil {
			cfg.Authorization.Authorizer = o.Authorizer
		}
	} else {
		if err := so.Authentication.ApplyTo(&cfg.Authentication, cfg.SecureServing, nil); err != nil {
			return nil, fmt.Errorf("delegated authentication: %w", err)
		}
		if err := so.Authorization.ApplyTo(&cfg.Authorization); err != nil {
			return nil, fmt.Errorf("delegated authorization: %w", err)
		}
	}
	if err := so.Audit.ApplyTo(&cfg.Config); err != nil {
		return nil, err
	}
	if err := applyFeatures(so.Features, &cfg.Config); err != nil {
		return nil, err
	}
	defs := func(ref openapicommon.ReferenceCallback) map[string]openapicommon.OpenAPIDefinition {
		out := generatedcore.GetOpenAPIDefinitions(ref)
		for _, get := range []openapicommon.GetOpenAPIDefinitions{generatedcm.GetOpenAPIDefinitions, generatedem.GetOpenAPIDefinitions, resourceopenapi.GetOpenAPIDefinitions} {
			for k, v := range get(ref) {
				out[k] = v
			}
		}
		return out
	}
	namer := openapinamer.NewDefinitionNamer(apiserver.Scheme, resourcemetrics.Scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(defs, namer)
	cfg.OpenAPIConfig.Info.Title, cfg.OpenAPIConfig.Info.Version = Name, "1.0.0"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(defs, namer)
	cfg.OpenAPIV3Config.Info.Title, cfg.OpenAPIV3Config.Info.Version = Name, "1.0.0"
	cfg.EnableMetrics = true
	cfg.FlowControl = nil

	var cm cmprovider.CustomMetricsProvider
	var em cmprovider.ExternalMetricsProvider
	if apis.custom {
		cm = p
	}
	if apis.external {
		em = p
	}
	fwd, err := installForwarding(o, cfg, kubeConfig, p, &cm, &em)
	if err != nil {
		return nil, err
	}
	srv, err := (&apiserver.Config{GenericConfig: &cfg.Config}).Complete(nil).New(Name, cm, em)
	if err != nil {
		return nil, fmt.Errorf("api server: %w", err)
	}
	if err := startForwarding(o, srv.GenericAPIServer, fwd); err != nil {
		return nil, err
	}
	if err := srv.GenericAPIServer.AddReadyzChecks(healthz.NamedCheck("rules-loaded", func(*http.Request) error {
		if len(p.ListAllMetrics())+len(p.ListAllExternalMetrics()) == 0 && !p.HasDiscovery() && !apis.resource {
			return errors.New("no metrics are served")
		}
		return nil
	})); err != nil {
		return nil, err
	}
	if io, ok := objects.(*adapter.InformerObjects); ok {
		// Only the first sync of the caches present at start, bounded by ReadyTimeout; after that an
		// unsynced cache fails only the requests that need it (adapter.InformerObjects.Unsynced).
		if err := srv.GenericAPIServer.AddReadyzChecks(healthz.NamedCheck("object-caches", func(*http.Request) error {
			return io.Unsynced()
		})); err != nil {
			return nil, err
		}
	}
	if err := cl.addCheck(srv.GenericAPIServer); err != nil {
		return nil, err
	}
	srv.GenericAPIServer.Handler.NonGoRestfulMux.Handle("/readyz/rules", rf)
	return srv, nil
}

// applyFeatures applies --profiling, --contention-profiling and --debug-socket-path.
// --enable-priority-and-fairness is not implemented: kube-apiserver, which every request passes
// first, already applies API Priority and Fairness; the flag says so in one log line.
func applyFeatures(f *genericoptions.FeatureOptions, cfg *genericapiserver.Config) error {
	g := *f
	if g.EnablePriorityAndFairness {
		klog.InfoS("--enable-priority-and-fairness does nothing in promql-adapter: kube-apiserver in front of it applies API Priority and Fairness; the generic max-in-flight limits apply here instead")
		g.EnablePriorityAndFairness = false
	}
	return g.ApplyTo(cfg, nil, nil)
}

// loopbackAuthenticator trusts any client connecting from a loopback address (--trust-loopback).
type loopbackAuthenticator struct{}

func (loopbackAuthenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return nil, false, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, false, fmt.Errorf("--trust-loopback: %s is not a loopback client", host)
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: "loopback", Groups: []string{user.AllAuthenticated}}}, true, nil
}

// installResourceMetrics serves metrics.k8s.io from rp, with pods from a stripped pod informer and
// nodes from the shared metadata informers.
func installResourceMetrics(ctx context.Context, srv *apiserver.CustomMetricsAdapterServer, kubeConfig *rest.Config, objects adapter.Objects, rp *resourcemetrics.Provider) error {
	io, ok := objects.(*adapter.InformerObjects)
	if !ok || kubeConfig == nil {
		return errors.New("metrics.k8s.io needs the cluster's pods and nodes: give --lister-kubeconfig or run in a cluster")
	}
	cs, err := kubernetes.NewForConfig(kubeConfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	nodes, err := naming.BuiltinResources().Resolve("nodes")
	if err != nil {
		return err
	}
	nl, synced := io.Lister(nodes)
	pods := resourcemetrics.NewPodCache(ctx, cs)
	io.GateOn("pods (metrics.k8s.io)", pods.HasSynced) // the nodes cache is one of io's
	return resourcemetrics.Install(srv.GenericAPIServer, rp, pods, &resourcemetrics.NodeCache{Lister: nl, Synced: synced})
}
