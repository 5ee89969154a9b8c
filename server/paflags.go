package server

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// In-cluster service account files, as rest.InClusterConfig reads them.
const (
	inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	inClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// paFlags are prometheus-adapter's flags that have no promql-adapter name of their own, accepted
// so that its Helm chart and manifests run by changing only the image.
type paFlags struct {
	relist, maxAge        time.Duration
	authConfig            string
	authInCluster         bool
	clientCert, clientKey string
	disableHTTP2          bool
	logged                bool // the warnings were logged
}

// PrometheusAdapterFlagNames are the flags addPrometheusAdapterFlags registers.
var PrometheusAdapterFlagNames = []string{
	"metrics-relist-interval", "metrics-max-age", "prometheus-auth-config", "prometheus-auth-incluster",
	"prometheus-client-tls-cert-file", "prometheus-client-tls-key-file", "prometheus-verb",
	"disable-http2",
}

// addPrometheusAdapterFlags registers prometheus-adapter's flag names on fs.
func (o *Options) addPrometheusAdapterFlags(fs *pflag.FlagSet) {
	p := &o.pa
	fs.DurationVar(&p.relist, "metrics-relist-interval", 0, "prometheus-adapter's name for --series-relist-interval; --series-max-age becomes at least this unless --metrics-max-age is given")
	fs.DurationVar(&p.maxAge, "metrics-max-age", 0, "prometheus-adapter's name for --series-max-age")
	fs.StringVar(&p.authConfig, "prometheus-auth-config", "", "kubeconfig-format file whose current context's TLS and credentials are used to reach Prometheus (its server is ignored; --prometheus-url is used)")
	fs.BoolVar(&p.authInCluster, "prometheus-auth-incluster", false, "reach Prometheus with the pod's service account token and the cluster CA")
	fs.StringVar(&p.clientCert, "prometheus-client-tls-cert-file", "", "client certificate presented to Prometheus (reloaded when it changes)")
	fs.StringVar(&p.clientKey, "prometheus-client-tls-key-file", "", "key of --prometheus-client-tls-cert-file")
	fs.BoolVar(&p.disableHTTP2, "disable-http2", false, "prometheus-adapter's name for --disable-http2-serving: the secure port serves HTTP/1.1 only (TLS ALPN offers no h2), which keeps HTTP/2 attacks such as rapid reset (CVE-2023-44487) off it")
	fs.StringVar(&o.PrometheusVerb, "prometheus-verb", o.PrometheusVerb, "HTTP method of queries and discovery calls: POST (the default) falls back to GET, for good, when Prometheus answers 405 or 501; GET sends every call by GET (prometheus-adapter's default), and a URL refused as too long (414) is an error naming this flag")
}

// normalizePrometheusAdapterFlags folds the prometheus-adapter names into the native settings and
// checks them; it logs, once, a warning when --prometheus-auth-incluster sends the token over plain HTTP.
func (o *Options) normalizePrometheusAdapterFlags() error {
	p := &o.pa
	var errs []error
	if p.relist > 0 {
		o.SeriesRelistInterval = p.relist
		if p.maxAge == 0 && o.SeriesMaxAge < p.relist {
			o.SeriesMaxAge = p.relist // prometheus-adapter's default: the max age is the relist interval
		}
	}
	if p.maxAge > 0 {
		o.SeriesMaxAge = p.maxAge
	}
	if p.disableHTTP2 {
		// k8s.io/apiserver's own switch: SecureServingInfo.DisableHTTP2 leaves h2 out of ALPN.
		o.Server.SecureServing.DisableHTTP2Serving = true
	}
	if p.authConfig != "" && p.authInCluster {
		errs = append(errs, errors.New("--prometheus-auth-config and --prometheus-auth-incluster exclude each other"))
	}
	if (p.clientCert == "") != (p.clientKey == "") {
		errs = append(errs, errors.New("--prometheus-client-tls-cert-file and --prometheus-client-tls-key-file go together"))
	}
	switch strings.ToUpper(o.PrometheusVerb) {
	case "", "GET", "POST":
	default:
		errs = append(errs, fmt.Errorf("--prometheus-verb %q: want GET or POST", o.PrometheusVerb))
	}
	if p.authInCluster && strings.HasPrefix(strings.ToLower(o.PrometheusURL), "http://") && !p.logged {
		klog.InfoS("warning: --prometheus-auth-incluster sends our ServiceAccount token, a credential for kube-apiserver, to Prometheus over plain HTTP, where anyone on the path can read it; use an https --prometheus-url", "url", o.PrometheusURL)
	}
	p.logged = true
	return errors.Join(errs...)
}

// applyPrometheusAdapterAuth sets the TLS and credentials the prometheus-adapter flags name on h.
func (o *Options) applyPrometheusAdapterAuth(h *config.HTTPClientConfig) error {
	p := &o.pa
	switch {
	case p.authInCluster:
		h.TLSConfig.CAFile = inClusterCAFile
		h.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: inClusterTokenFile}
	case p.authConfig != "":
		if err := kubeconfigAuth(p.authConfig, h); err != nil {
			return fmt.Errorf("--prometheus-auth-config %s: %w", p.authConfig, err)
		}
	}
	if p.clientCert != "" {
		h.TLSConfig.CertFile, h.TLSConfig.KeyFile = p.clientCert, p.clientKey
		h.TLSConfig.Cert, h.TLSConfig.Key = "", ""
	}
	return nil
}

// kubeconfigAuth copies the TLS settings and credentials of a kubeconfig's current context into h,
// as prometheus-adapter uses them; exec and auth-provider plugins are refused.
func kubeconfigAuth(path string, h *config.HTTPClientConfig) error {
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return err
	}
	ctx, ok := raw.Contexts[raw.CurrentContext]
	if !ok {
		return fmt.Errorf("no current context (current-context %q)", raw.CurrentContext)
	}
	// Prometheus's URL comes from --prometheus-url; a kubeconfig written for it may name no server.
	if c, ok := raw.Clusters[ctx.Cluster]; ok && c.Server == "" {
		c.Server = "https://prometheus.invalid"
	}
	rc, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		return err
	}
	if rc.ExecProvider != nil || rc.AuthProvider != nil {
		return errors.New("exec and auth-provider credentials are not supported; use a token, a client certificate or basic auth")
	}
	return restToHTTPConfig(rc, h)
}

// restToHTTPConfig maps a client-go rest.Config's TLS and credentials onto a Prometheus http_config.
func restToHTTPConfig(rc *rest.Config, h *config.HTTPClientConfig) error {
	t := rc.TLSClientConfig
	h.TLSConfig.InsecureSkipVerify = t.Insecure
	h.TLSConfig.ServerName = t.ServerName
	if t.CAFile != "" {
		h.TLSConfig.CAFile = t.CAFile
	} else if len(t.CAData) > 0 {
		h.TLSConfig.CA = string(t.CAData)
	}
	if t.CertFile != "" || t.KeyFile != "" {
		h.TLSConfig.CertFile, h.TLSConfig.KeyFile = t.CertFile, t.KeyFile
	} else if len(t.CertData) > 0 {
		h.TLSConfig.Cert, h.TLSConfig.Key = string(t.CertData), config.Secret(t.KeyData)
	}
	switch {
	case rc.BearerTokenFile != "":
		h.Authorization = &config.Authorization{Type: "Bearer", CredentialsFile: rc.BearerTokenFile}
	case rc.BearerToken != "":
		h.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(rc.BearerToken)}
	case rc.Username != "":
		h.BasicAuth = &config.BasicAuth{Username: rc.Username, Password: config.Secret(rc.Password)}
	}
	return nil
}
