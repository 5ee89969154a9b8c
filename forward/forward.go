package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/klog/v2"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// Served is what promql-adapter itself serves: its providers' metric lists.
type Served interface {
	ListAllMetrics() []provider.CustomMetricInfo
	ListAllExternalMetrics() []provider.ExternalMetricInfo
	// DiscoveryPending says the lists may lack discovered metrics: a discovery selector of the
	// current rules has not been listed once yet.
	DiscoveryPending() bool
}

// RecentlyServed is how long a metric promql-adapter listed stays routed to promql-adapter after
// its list drops it (a relist that aged it out or failed, a reload until the next discovery pass):
// an upstream that lists the same name gets it only after that, so the source of a metric does not
// flip with our discovery. It is the default --series-max-age.
const RecentlyServed = 10 * time.Minute

// Forwarder routes the metrics API requests promql-adapter does not serve to the upstream
// adapters that list them.
type Forwarder struct {
	ours      Served
	upstreams map[string][]*Upstream // by API, in flag order: the first that lists a metric answers it
	metrics   *Metrics
	now       func() time.Time

	mu      sync.Mutex
	logged  map[string]bool // clashes already logged
	clashes []Clash

	rmu          sync.Mutex
	recentExt    map[string]time.Time // external metrics we listed → when last
	recentCustom map[string]recent    // custom metrics we listed, by customKey
}

// recent is a custom metric we listed, and when last.
type recent struct {
	info provider.CustomMetricInfo
	at   time.Time
}

// Clash is a metric two servers list; Winner answers it (promql-adapter's own metrics come first).
type Clash struct {
	API, Metric, Upstream, Winner string
}

// Ours names promql-adapter as a clash's winner.
const Ours = "promql-adapter"

// New builds a forwarder for the upstreams in specs. kube is our kube-apiserver client
// configuration (nil without a cluster); timeout bounds every call to an upstream.
func New(ours Served, specs []Spec, kube *rest.Config, timeout time.Duration, reg prometheus.Registerer) (*Forwarder, error) {
	f := &Forwarder{ours: ours, upstreams: map[string][]*Upstream{}, now: time.Now, logged: map[string]bool{},
		recentExt: map[string]time.Time{}, recentCustom: map[string]recent{}}
	seen := map[string]bool{}
	for _, s := range specs {
		if seen[s.API+"/"+s.Name] {
			return nil, fmt.Errorf("two upstreams of %s are named %q: give each a distinct name=", s.API, s.Name)
		}
		seen[s.API+"/"+s.Name] = true
		u, err := newUpstream(s, kube, timeout)
		if err != nil {
			return nil, err
		}
		f.upstreams[s.API] = append(f.upstreams[s.API], u)
	}
	f.metrics = newMetrics(reg)
	return f, nil
}

// Has says whether requests of api may be forwarded.
func (f *Forwarder) Has(api string) bool { return len(f.upstreams[api]) > 0 }

// Run reads every upstream's metric list at once and then every interval, each upstream on its
// own, until ctx ends. Discovery and routing only ever read the last list.
func (f *Forwarder) Run(ctx context.Context, interval time.Duration) {
	var wg sync.WaitGroup
	for api, ups := range f.upstreams {
		for _, u := range ups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					f.Refresh(ctx, api, u)
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
				}
			}()
		}
	}
	wg.Wait()
}

// RefreshAll reads every upstream's metric list once (tests and start-up).
func (f *Forwarder) RefreshAll(ctx context.Context) {
	for api, ups := range f.upstreams {
		for _, u := range ups {
			f.Refresh(ctx, api, u)
		}
	}
}

// Refresh reads one upstream's metric list and recomputes the clashes.
func (f *Forwarder) Refresh(ctx context.Context, api string, u *Upstream) {
	err := u.refresh(ctx, f.now())
	l := u.list.Load()
	f.metrics.listed(api, u.Name(), len(l.keys), err == nil)
	switch {
	case err != nil && tlsFailed(err):
		// A missing or wrong CA does not heal by itself: say so at the default level, once per message.
		if u.logTLS(err.Error()) {
			klog.ErrorS(err, "upstream's certificate not verified; its metrics are not forwarded until its CA is given", "api", api, "upstream", u.Name(), "url", u.spec.URL)
		}
	case err != nil:
		klog.V(2).InfoS("upstream metric list not read; its last list stays in use", "api", api, "upstream", u.Name(), "listed", len(l.keys), "err", err)
	default:
		u.logTLS("")
	}
	f.noteOurs()
	f.updateClashes()
}

// noteOurs records every metric promql-adapter lists now, and forgets those it has not listed for
// RecentlyServed.
func (f *Forwarder) noteOurs() {
	now := f.now()
	ext, custom := f.ours.ListAllExternalMetrics(), f.ours.ListAllMetrics()
	f.rmu.Lock()
	defer f.rmu.Unlock()
	for _, e := range ext {
		f.recentExt[e.Metric] = now
	}
	for _, i := range custom {
		f.recentCustom[customKey(i.GroupResource, i.Metric)] = recent{info: i, at: now}
	}
	for k, at := range f.recentExt {
		if now.Sub(at) > RecentlyServed {
			delete(f.recentExt, k)
		}
	}
	for k, r := range f.recentCustom {
		if now.Sub(r.at) > RecentlyServed {
			delete(f.recentCustom, k)
		}
	}
}

// noteServed records that promql-adapter lists the metric t asks for.
func (f *Forwarder) noteServed(t target) {
	now := f.now()
	f.rmu.Lock()
	defer f.rmu.Unlock()
	if t.api == External {
		f.recentExt[t.metric] = now
		return
	}
	for _, i := range f.ours.ListAllMetrics() {
		if i.Metric == t.metric && matchCustom([]provider.CustomMetricInfo{i}, nil, t.resource, t.metric) {
			f.recentCustom[customKey(i.GroupResource, i.Metric)] = recent{info: i, at: now}
		}
	}
}

// recentlyOurs says whether promql-adapter listed the metric t asks for within RecentlyServed.
func (f *Forwarder) recentlyOurs(t target) bool {
	now := f.now()
	f.rmu.Lock()
	defer f.rmu.Unlock()
	if t.api == External {
		at, ok := f.recentExt[t.metric]
		return ok && now.Sub(at) <= RecentlyServed
	}
	var list []provider.CustomMetricInfo
	for _, r := range f.recentCustom {
		if r.info.Metric == t.metric && now.Sub(r.at) <= RecentlyServed {
			list = append(list, r.info)
		}
	}
	return matchCustom(list, nil, t.resource, t.metric)
}

// updateClashes finds the metrics listed by more than one server, counts them by upstream and
// logs each new one once.
func (f *Forwarder) updateClashes() {
	var out []Clash
	ours := f.ours.ListAllMetrics()
	oursExt := map[string]bool{}
	for _, e := range f.ours.ListAllExternalMetrics() {
		oursExt[e.Metric] = true
	}
	for api, ups := range f.upstreams {
		winner := map[string]string{}
		for _, u := range ups {
			l := u.list.Load()
			n := 0
			add := func(metric, key string, ourMetric bool) {
				w := winner[key]
				if ourMetric {
					w = Ours
				}
				if w == "" {
					winner[key] = u.Name()
					return
				}
				n++
				out = append(out, Clash{API: api, Metric: metric, Upstream: u.Name(), Winner: w})
			}
			for _, m := range l.external {
				add(m, m, oursExt[m])
			}
			for _, i := range l.custom {
				k := customKey(i.GroupResource, i.Metric)
				add(k, k, matchCustom(ours, nil, i.GroupResource.String(), i.Metric))
			}
			f.metrics.clashes.WithLabelValues(api, u.Name()).Set(float64(n))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.API+"\x00"+a.Metric+"\x00"+a.Upstream < b.API+"\x00"+b.Metric+"\x00"+b.Upstream
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clashes = out
	for _, c := range out {
		k := c.API + "\x00" + c.Metric + "\x00" + c.Upstream + "\x00" + c.Winner
		if !f.logged[k] {
			f.logged[k] = true
			klog.InfoS("a metric is served by two servers; requests for it are answered by the first", "api", c.API, "metric", c.Metric, "upstream", c.Upstream, "answeredBy", c.Winner)
		}
	}
}

// Clashes are the metrics listed by more than one server, as of the last refresh.
func (f *Forwarder) Clashes() []Clash {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Clash(nil), f.clashes...)
}

// target is the API and metric a metrics API path asks for.
type target struct {
	api, resource, metric string
}

// parsePath reads a metric request's path: /apis/external.metrics.k8s.io/<v>/namespaces/<ns>/<metric>,
// /apis/custom.metrics.k8s.io/<v>/namespaces/<ns>/<resource>/<name>/<metric>, .../<resource>/<name>/<metric>
// (cluster-scoped objects) and .../namespaces/<ns>/metrics/<metric> (the namespace's own metric).
// Anything else (discovery, another group) is not a metric request.
func parsePath(p string) (target, bool) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) < 4 || parts[0] != "apis" {
		return target{}, false
	}
	api, rest := parts[1], parts[3:]
	for _, s := range rest {
		if s == "" {
			return target{}, false
		}
	}
	switch api {
	case External:
		if len(rest) == 3 && rest[0] == "namespaces" {
			return target{api: api, metric: rest[2]}, true
		}
	case Custom:
		switch {
		case len(rest) == 4 && rest[0] == "namespaces" && rest[2] == "metrics":
			return target{api: api, resource: "namespaces", metric: rest[3]}, true
		case len(rest) == 5 && rest[0] == "namespaces":
			return target{api: api, resource: rest[2], metric: rest[4]}, true
		case len(rest) == 3:
			return target{api: api, resource: rest[0], metric: rest[2]}, true
		}
	}
	return target{}, false
}

// oursServe says whether promql-adapter answers the metric.
func (f *Forwarder) oursServe(t target) bool {
	if t.api == External {
		for _, e := range f.ours.ListAllExternalMetrics() {
			if e.Metric == t.metric {
				return true
			}
		}
		return false
	}
	return matchCustom(f.ours.ListAllMetrics(), nil, t.resource, t.metric)
}

// Wrap routes metric requests around inner, the API handler: a metric promql-adapter serves, or
// listed within RecentlyServed, goes to inner; one it does not serve goes to the first upstream
// that lists it, else to the first catch-all upstream, but gets a 503 while our discovery is
// pending (it may yet be ours). Install it inside the generic API server's handler chain
// (DefaultBuildHandlerChain's apiHandler), so that only callers our authentication and
// authorization let through are forwarded.
func (f *Forwarder) Wrap(inner http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			inner.ServeHTTP(w, r)
			return
		}
		t, ok := parsePath(r.URL.Path)
		if !ok || !f.Has(t.api) {
			inner.ServeHTTP(w, r)
			return
		}
		// Ours first (a clash included), and what we listed within RecentlyServed: a relist that
		// aged a name out, or a reload, does not hand it to an upstream at once.
		if f.oursServe(t) {
			f.noteServed(t)
			inner.ServeHTTP(w, r)
			return
		}
		if f.recentlyOurs(t) {
			inner.ServeHTTP(w, r)
			return
		}
		var to *Upstream
		for _, u := range f.upstreams[t.api] {
			if u.lists(t.api, t.resource, t.metric) {
				to = u
				break
			}
		}
		if to == nil {
			// Nobody lists it: a catch-all upstream (KEDA, which lists no metric names) answers it.
			for _, u := range f.upstreams[t.api] {
				if u.spec.CatchAll {
					to = u
					break
				}
			}
		}
		if to != nil {
			if f.ours.DiscoveryPending() {
				// Our discovery may yet list it: forwarding now could answer with another
				// query's value than ours later, so say it is not decided yet.
				writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
					fmt.Sprintf("%s metric %q is not listed yet: promql-adapter's metric discovery has not completed a pass since start or since its rules changed (discovery pending), so whether promql-adapter or upstream %s answers it is not decided yet", kind(t.api), name(t), to.Name()))
				return
			}
			f.forward(w, r, t, to)
			return
		}
		// An upstream whose list was never read may serve it: say so rather than answer a
		// 404 that an HPA would take as final.
		var unknown []string
		for _, u := range f.upstreams[t.api] {
			if l := u.list.Load(); !l.listed {
				why := "not read yet"
				if l.err != nil {
					why = l.err.Error()
				}
				unknown = append(unknown, fmt.Sprintf("%s (%s)", u.Name(), why))
			}
		}
		if len(unknown) > 0 {
			writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
				fmt.Sprintf("%s metric %q is not served by promql-adapter, and the metric list of upstream %s could not be read yet", kind(t.api), name(t), strings.Join(unknown, ", ")))
			return
		}
		inner.ServeHTTP(w, r)
	})
}

func kind(api string) string {
	if api == External {
		return "external"
	}
	return "custom"
}

func name(t target) string {
	if t.api == External {
		return t.metric
	}
	return t.resource + "/" + t.metric
}

// forward proxies r to u with the caller's path and query, returning u's status and body
// unchanged and of its headers only those responseHeader keeps. u sees our identity (see Spec.Auth), or the caller's with identity=impersonate.
// A call that fails or outlasts the timeout gets a 503 naming the upstream.
func (f *Forwarder) forward(w http.ResponseWriter, r *http.Request, t target, u *Upstream) {
	start := f.now()
	ctx, cancel := context.WithTimeout(r.Context(), u.timeout)
	defer cancel()
	caller, _ := request.UserFrom(r.Context())
	code := 0
	rt := u.rt
	if u.spec.Impersonate && caller != nil {
		rt = transport.NewImpersonatingRoundTripper(transport.ImpersonationConfig{
			UserName: caller.GetName(), UID: caller.GetUID(), Groups: caller.GetGroups(), Extra: caller.GetExtra(),
		}, rt)
	}
	p := &httputil.ReverseProxy{
		Transport: rt,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u.base)
			// Only what describes the wanted answer crosses over: never the caller's credentials,
			// the front proxy's X-Remote-* identity or impersonation asked of us.
			h := http.Header{}
			for _, k := range []string{"Accept", "Accept-Encoding"} {
				if v := pr.In.Header.Values(k); len(v) > 0 {
					h[k] = v
				}
			}
			pr.Out.Header = h
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			code = resp.StatusCode
			resp.Header = responseHeader(resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code = http.StatusServiceUnavailable
			err = u.explain(timeoutError(ctx, err, u.timeout))
			klog.V(2).InfoS("upstream did not answer", "api", t.api, "upstream", u.Name(), "metric", name(t), "err", err)
			writeStatus(w, code, metav1.StatusReasonServiceUnavailable,
				fmt.Sprintf("%s metric %q is served by upstream %s, which did not answer: %v", kind(t.api), name(t), u.Name(), err))
		},
	}
	p.ServeHTTP(w, r.WithContext(ctx))
	f.metrics.forwarded(t.api, u.Name(), code, f.now().Sub(start))
}

// responseHeader keeps of an upstream's answer's headers h only those that reach the caller: what
// describes the body (Content-Type, Content-Encoding, Content-Length, Cache-Control) and the API
// server's warnings (Warning), and adds X-Content-Type-Options: nosniff, as our own answers have.
// All others are dropped: Retry-After (client-go retries a 5xx that has one up to 10 times, holding
// the HPA's sync; our own 503s leave it out for that reason), Set-Cookie, WWW-Authenticate (a
// challenge to us, not to the caller), Location, Audit-Id (ours identifies the request in our audit
// log), and anything of the upstream's own.
func responseHeader(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range []string{"Content-Type", "Content-Encoding", "Content-Length", "Cache-Control", "Warning"} {
		if v := h.Values(k); len(v) > 0 {
			out[k] = v
		}
	}
	out.Set("X-Content-Type-Options", "nosniff")
	return out
}

// writeStatus answers a metav1.Status, as the API server's own errors are.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	body, _ := json.Marshal(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code),
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// No Retry-After: client-go (the HPA controller's metrics client, kubectl) retries a 5xx that has one up to
	// 10 times, so a dead upstream held each HPA sync ~10 s (seen against a real KEDA: TestE2EKedaDown's first
	// 503 took 10.1 s through kube-apiserver). The HPA asks again at its next sync anyway.
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func codeLabel(code int) string {
	if code == 0 {
		return "none"
	}
	return strconv.Itoa(code)
}
