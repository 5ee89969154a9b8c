package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// versions are the group-versions read for an upstream's metric list, in order; the first that
// answers is used (an older adapter serves custom.metrics.k8s.io/v1beta1 only).
var versions = map[string][]string{
	External: {"v1beta1"},
	Custom:   {"v1beta2", "v1beta1"},
}

// Upstream is one adapter requests are forwarded to, with the metrics it last listed.
type Upstream struct {
	spec    Spec
	base    *url.URL
	rt      http.RoundTripper
	timeout time.Duration
	list    atomic.Pointer[listing]

	mu        sync.Mutex
	tlsLogged string // the last TLS verification error logged, "" once a list succeeds
}

// logTLS says whether a TLS verification failure with this message is new (so to be logged);
// msg "" resets it after a success.
func (u *Upstream) logTLS(msg string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	changed := u.tlsLogged != msg
	u.tlsLogged = msg
	return changed && msg != ""
}

// listing is an upstream's last metric list and the outcome of the last attempt to read it.
type listing struct {
	listed   bool // a list was read at least once; the items are the last one read
	at       time.Time
	custom   []provider.CustomMetricInfo
	external []string
	keys     map[string]bool // custom: group-resource/metric; external: metric
	err      error           // the last attempt's error, nil after a success
	failedAt time.Time
}

// newUpstream builds the upstream's transport with client-go from spec (see Spec.RestConfig).
func newUpstream(spec Spec, kube *rest.Config, timeout time.Duration) (*Upstream, error) {
	cfg, err := spec.RestConfig(kube)
	if err != nil {
		return nil, err
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", spec.Name, err)
	}
	base, err := url.Parse(spec.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", spec.Name, err)
	}
	if spec.Auth == AuthServiceAccountInsecure && (base.Scheme == "http" || spec.Insecure) {
		klog.InfoS("warning: upstream gets our ServiceAccount token, a credential for kube-apiserver, over a connection anyone on the path can read or intercept (auth=serviceaccount-insecure)",
			"api", spec.API, "upstream", spec.Name, "url", spec.URL, "insecureSkipTLSVerify", spec.Insecure)
	}
	u := &Upstream{spec: spec, base: base, rt: rt, timeout: timeout}
	u.list.Store(&listing{})
	return u, nil
}

// Name is the upstream's name in logs, metrics and errors.
func (u *Upstream) Name() string { return u.spec.Name }

// lists says whether the upstream's last list has the metric (a key as keyOf makes).
func (u *Upstream) lists(api, gr, metric string) bool {
	l := u.list.Load()
	if api == External {
		return l.keys[metric]
	}
	return matchCustom(l.custom, l.keys, gr, metric)
}

// refresh reads the upstream's metric list within the upstream's timeout. A failure keeps the
// last list (its metrics keep being forwarded, and get a 503 naming the upstream while it is down).
func (u *Upstream) refresh(ctx context.Context, now time.Time) error {
	items, err := u.read(ctx)
	old := u.list.Load()
	next := *old
	if err != nil {
		next.err, next.failedAt = err, now
		u.list.Store(&next)
		return err
	}
	next = listing{listed: true, at: now, keys: map[string]bool{}}
	for _, r := range items {
		if u.spec.API == External {
			if !next.keys[r.Name] {
				next.keys[r.Name] = true
				next.external = append(next.external, r.Name)
			}
			continue
		}
		res, metric, ok := strings.Cut(r.Name, "/")
		if !ok || res == "" || metric == "" {
			continue // not a metric
		}
		info := provider.CustomMetricInfo{GroupResource: schema.ParseGroupResource(res), Namespaced: r.Namespaced, Metric: metric}
		if k := customKey(info.GroupResource, metric); !next.keys[k] {
			next.keys[k] = true
			next.custom = append(next.custom, info)
		}
	}
	u.list.Store(&next)
	return nil
}

// read fetches the upstream's APIResourceList for its API.
func (u *Upstream) read(ctx context.Context) ([]metav1.APIResource, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	var errs []error
	for _, v := range versions[u.spec.API] {
		ref := *u.base
		ref.Path = path.Join("/", u.base.Path, "apis", u.spec.API, v)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := u.rt.RoundTrip(req)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", ref.String(), u.explain(timeoutError(ctx, err, u.timeout)))
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", ref.String(), timeoutError(ctx, err, u.timeout))
		}
		if resp.StatusCode == http.StatusNotFound {
			errs = append(errs, fmt.Errorf("listing %s: 404", ref.String()))
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("listing %s: %d %s", ref.String(), resp.StatusCode, snippet(body))
		}
		var list metav1.APIResourceList
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("listing %s: not an APIResourceList: %w", ref.String(), err)
		}
		return list.APIResources, nil
	}
	return nil, errors.Join(errs...)
}

// explain adds to a failed TLS verification what to give: the CA that signed the upstream's
// certificate (KEDA's metrics server serves one of its own CA, which no system pool holds).
func (u *Upstream) explain(err error) error {
	var unverified *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &host):
		return fmt.Errorf("%w (upstream %s's certificate is not valid for the URL's host: give server-name= with a name it holds)", err, u.Name())
	case errors.As(err, &unverified), errors.As(err, &unknown):
		return fmt.Errorf("%w (upstream %s's certificate is not signed by a CA we trust: give that CA with ca-file= (KEDA: ca.crt of the kedaorg-certs Secret in keda) or cluster-ca)", err, u.Name())
	}
	return err
}

// tlsFailed says whether err is a failed verification of the upstream's certificate.
func tlsFailed(err error) bool {
	var unverified *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	return errors.As(err, &unverified) || errors.As(err, &unknown) || errors.As(err, &host)
}

// timeoutError names the bound when ctx ended the call.
func timeoutError(ctx context.Context, err error, d time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s", d)
	}
	return err
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// customKey is a custom metric's name in discovery: group-resource/metric.
func customKey(gr schema.GroupResource, metric string) string {
	return gr.String() + "/" + metric
}

// matchCustom finds a custom metric as custom-metrics-apiserver providers do: the exact
// group-resource, or for a resource named without a group ("deployments") a unique grouped one.
func matchCustom(list []provider.CustomMetricInfo, keys map[string]bool, gr, metric string) bool {
	g := schema.ParseGroupResource(gr)
	if keys != nil {
		if keys[customKey(g, metric)] {
			return true
		}
	} else {
		for _, i := range list {
			if i.GroupResource == g && i.Metric == metric {
				return true
			}
		}
	}
	if g.Group != "" {
		return false
	}
	n := 0
	for _, i := range list {
		if i.Metric == metric && i.GroupResource.Resource == g.Resource {
			n++
		}
	}
	return n == 1
}
