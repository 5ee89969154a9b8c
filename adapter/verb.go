package adapter

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// verbTransport sends Prometheus's form POSTs (queries, names, label names) as the configured
// verb. With POST, a 405 or 501 answer makes it send the call again as GET and every later call
// by GET directly (Prometheus behind a proxy that allows only GET, or an old Thanos Query).
type verbTransport struct {
	next    http.RoundTripper
	getOnly bool         // --prometheus-verb=GET
	refused atomic.Int32 // the status a POST was refused with (405 or 501); 0 while POST works
}

func newVerbTransport(next http.RoundTripper, verb string) (*verbTransport, error) {
	switch strings.ToUpper(verb) {
	case "", http.MethodPost:
		return &verbTransport{next: next}, nil
	case http.MethodGet:
		return &verbTransport{next: next, getOnly: true}, nil
	}
	return nil, fmt.Errorf("prometheus verb %q: want GET or POST", verb)
}

// RoundTrip implements http.RoundTripper.
func (t *verbTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		return t.next.RoundTrip(req)
	}
	form, err := formOf(req)
	if err != nil {
		return nil, err
	}
	if t.getOnly || t.refused.Load() != 0 {
		return t.next.RoundTrip(asGet(req, form))
	}
	post := req.Clone(req.Context())
	post.Body = io.NopCloser(strings.NewReader(form))
	post.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(form)), nil }
	post.ContentLength = int64(len(form))
	resp, err := t.next.RoundTrip(post)
	if err != nil || (resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotImplemented) {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if t.refused.CompareAndSwap(0, int32(resp.StatusCode)) {
		klog.InfoS("Prometheus refused a POST; queries and discovery go by GET from now on (--prometheus-verb=GET says so from the start)",
			"path", req.URL.Path, "status", resp.StatusCode)
	}
	return t.next.RoundTrip(asGet(req, form))
}

// formOf reads the request's form body, closing it as a RoundTripper must.
func formOf(req *http.Request) (string, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return "", nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(io.LimitReader(req.Body, 64<<20))
	if err != nil {
		return "", fmt.Errorf("prometheus request body: %w", err)
	}
	return string(b), nil
}

// asGet is req as a GET with the form in its URL's query.
func asGet(req *http.Request, form string) *http.Request {
	g := req.Clone(req.Context())
	g.Method = http.MethodGet
	g.Body, g.GetBody, g.ContentLength = nil, nil, 0
	g.Header.Del("Content-Type")
	delete(g.Header, "Idempotency-Key")
	u := *req.URL
	switch {
	case u.RawQuery == "":
		u.RawQuery = form
	case form != "":
		u.RawQuery += "&" + form
	}
	g.URL = &u
	return g
}

// tooLongHint explains a 414 (URI too long): the query went by GET, and why.
func (t *verbTransport) tooLongHint() string {
	if t.getOnly {
		return " (URI too long: Prometheus or a proxy before it refused the query's URL; --prometheus-verb=GET sends queries by GET, --prometheus-verb=POST sends them in the body)"
	}
	return fmt.Sprintf(" (URI too long: Prometheus or a proxy before it refused the query's URL; queries go by GET because a POST was refused with %d (see --prometheus-verb): allow POST to Prometheus's /api/v1/ endpoints)", t.refused.Load())
}
