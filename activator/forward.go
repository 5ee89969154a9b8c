package activator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// Forwarder proxies a request to one of a target's Ready addresses, spread
// round-robin. A connection refused moves on to the next address (nothing was
// sent, so nothing is sent twice); when every address refuses, it tries again
// until the request's deadline, as an address can be Ready before its process
// listens.
type Forwarder struct {
	proxy *httputil.ReverseProxy
	next  atomic.Uint64
	// Backoff between rounds of refused dials (default 20ms).
	Backoff time.Duration
	// TrustedProxies are the peers whose X-Forwarded-* and Forwarded headers are kept; see Options.
	TrustedProxies []netip.Prefix
}

// plan is what the dialer of one request may use.
type plan struct {
	target   Target
	addrs    func() []string // fresh Ready addresses
	deadline time.Time       // stop retrying refused dials
	noReady  atomic.Bool     // the dial found no Ready address at all: nothing was sent
}

// errNoReady: every address went away before a connection was made (the target went to sleep).
var errNoReady = errors.New("no Ready address")

type planKey struct{}

// NotServingError reports that every Ready address refused connections until the deadline.
type NotServingError struct {
	Target Target
	Err    error
}

func (e *NotServingError) Error() string {
	return fmt.Sprintf("%s: no Ready address accepts connections: %v", e.Target, e.Err)
}

func (e *NotServingError) Unwrap() error { return e.Err }

// NewForwarder builds a Forwarder; errorHandler answers the failures the proxy meets.
func NewForwarder(errorHandler func(http.ResponseWriter, *http.Request, error)) *Forwarder {
	f := &Forwarder{Backoff: 20 * time.Millisecond}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return f.dial(ctx, d, network, addr)
		},
		MaxIdleConns:          1000,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p := pr.In.Context().Value(planKey{}).(*plan)
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = p.first(&f.next)
			pr.Out.Host = pr.In.Host // the app sees the Host its client asked for
			if !f.trusted(pr.In.RemoteAddr) {
				// ReverseProxy removed the client's X-Forwarded-*; Forwarded is ours to drop.
				pr.Out.Header.Del("Forwarded")
				pr.SetXForwarded()
				return
			}
			// A trusted proxy in front: append to its chain, keep what it said
			// about the original request.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
			for _, k := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Get(k); v != "" {
					pr.Out.Header.Set(k, v)
				}
			}
		},
		Transport:     tr,
		FlushInterval: 0, // httputil flushes at once for event streams and bodies of unknown length
		ErrorHandler:  errorHandler,
		ErrorLog:      nil,
	}
	return f
}

// trusted reports whether the peer at remoteAddr (host:port) is one of TrustedProxies.
func (f *Forwarder) trusted(remoteAddr string) bool {
	if len(f.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range f.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParseCIDRs parses a ","-separated list of CIDRs (or single addresses), as --trusted-proxy-cidrs takes it.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", item)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", item, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// first picks the round-robin address of a request.
func (p *plan) first(next *atomic.Uint64) string {
	addrs := p.addrs()
	if len(addrs) == 0 {
		return "no-ready-address.invalid:80" // dial retries with fresh addresses
	}
	return addrs[next.Add(1)%uint64(len(addrs))]
}

// Forward proxies r to t's Ready addresses, retrying refused connections
// until deadline. It returns false, having written nothing, when the target
// lost every Ready address before a connection was made: hold r and forward it again.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, t Target, addrs func() []string, deadline time.Time) bool {
	p := &plan{target: t, addrs: addrs, deadline: deadline}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), planKey{}, p)))
	return !p.noReady.Load()
}

// dial connects to addr, or on a refusal to the plan's other addresses, in rounds until the plan's deadline.
func (f *Forwarder) dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	p, _ := ctx.Value(planKey{}).(*plan)
	if p == nil {
		return d.DialContext(ctx, network, addr)
	}
	var last error
	for round := 0; ; round++ {
		addrs := p.addrs()
		if len(addrs) == 0 {
			p.noReady.Store(true)
			return nil, errNoReady
		}
		for _, a := range rotate(addrs, addr) {
			c, err := d.DialContext(ctx, network, a)
			if err == nil {
				if round > 0 || a != addr {
					klog.V(4).InfoS("connected after refusals", "target", p.target, "addr", a, "rounds", round)
				}
				return c, nil
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return nil, err
			}
			last = err
		}
		if ctx.Err() != nil || time.Now().Add(f.Backoff).After(p.deadline) {
			return nil, &NotServingError{Target: p.target, Err: last}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(f.Backoff):
		}
	}
}

// rotate returns addrs starting at first (when present), then the others in order.
func rotate(addrs []string, first string) []string {
	for i, a := range addrs {
		if a == first {
			return append(append([]string{}, addrs[i:]...), addrs[:i]...)
		}
	}
	return addrs
}
