package wake

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// webhookTestToken is the bearer token the table test configures.
const webhookTestToken = "s3cr3t-wake-token"

// webhookFixture is the Alertmanager 0.25 notification captured from a real Alertmanager: two firing alerts and one resolved.
const webhookFixture = "../testdata/alertmanager/v4-firing.json"

// webhookCall is one call to webhookFakeWaker.Wake.
type webhookCall struct {
	Target Target
	Reason string
}

// webhookFakeWaker records calls and answers with the error configured for the target.
type webhookFakeWaker struct {
	mu    sync.Mutex
	calls []webhookCall
	errs  map[Target]error
}

func (f *webhookFakeWaker) Wake(_ context.Context, t Target, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, webhookCall{Target: t, Reason: reason})
	return f.errs[t]
}

func (f *webhookFakeWaker) recorded() []webhookCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]webhookCall(nil), f.calls...)
}

// webhookResponse is the JSON a webhook answers with.
type webhookResponse struct {
	Error    string   `json:"error"`
	Leader   string   `json:"leader"`
	Woken    []Target `json:"woken"`
	Ignored  int      `json:"ignored"`
	Resolved int      `json:"resolved"`
	Errors   []struct {
		Target
		Error string `json:"error"`
	} `json:"errors"`
}

// webhookPayload returns the fixture, changed by edit, as JSON.
func webhookPayload(t *testing.T, edit func(m map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(webhookFixture)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode fixture: %v", err)
	}
	if edit != nil {
		edit(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("encode payload: %v", err)
	}
	return string(out)
}

// webhookTestAlert returns an Alertmanager-shaped alert with the given status, labels and fingerprint.
func webhookTestAlert(status, fingerprint string, labels map[string]string) map[string]any {
	l := map[string]any{}
	for k, v := range labels {
		l[k] = v
	}
	endsAt := "0001-01-01T00:00:00Z"
	if status == "resolved" {
		endsAt = "2026-11-23T03:42:47Z"
	}
	return map[string]any{
		"status":       status,
		"labels":       l,
		"annotations":  map[string]any{"summary": "test"},
		"startsAt":     "2026-11-23T03:41:47Z",
		"endsAt":       endsAt,
		"generatorURL": "http://prometheus.monitoring.svc:9090/graph",
		"fingerprint":  fingerprint,
	}
}

// webhookAddAlerts appends alerts to a payload's alerts.
func webhookAddAlerts(alerts ...map[string]any) func(m map[string]any) {
	return func(m map[string]any) {
		list := m["alerts"].([]any)
		for _, a := range alerts {
			list = append(list, a)
		}
		m["alerts"] = list
	}
}

func TestWebhook(t *testing.T) {
	checkout := Target{Namespace: "shop", HPA: "checkout"}
	emailWorker := Target{Namespace: "shop", Deployment: "email-worker"}
	invoicer := Target{Namespace: "billing", HPA: "invoicer"}
	fixtureWakes := []webhookCall{
		{checkout, "alertmanager: ScaleFromZeroDemand (de71c1b519009fe7)"},
		{emailWorker, "alertmanager: ScaleFromZeroDemand (c8bf82fce9faf118)"},
	}
	leader := "promql-adapter-6f7c9d5b8-x2kqp"
	notLeader := &NotLeaderError{Leader: leader}
	huge := strings.Repeat("x", webhookDefaultMaxBody)

	tests := []struct {
		name       string
		method     string // POST unless set
		path       string // /alertmanager unless set
		body       string
		auth       *string // Authorization header; "Bearer <token>" when nil
		maxBody    int64
		errs       map[Target]error
		wantCode   int
		wantWakes  []webhookCall
		wantHeader map[string]string
		check      func(t *testing.T, r webhookResponse)
	}{
		{
			name:      "v4 payload wakes the two firing targets, not the resolved one",
			body:      webhookPayload(t, nil),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
			check: func(t *testing.T, r webhookResponse) {
				if !reflect.DeepEqual(r.Woken, []Target{checkout, emailWorker}) || r.Ignored != 0 || r.Resolved != 1 || len(r.Errors) != 0 {
					t.Errorf("response = %+v", r)
				}
			},
		},
		{
			name: "the same target named twice is woken once, for its first alert",
			body: webhookPayload(t, webhookAddAlerts(
				webhookTestAlert("firing", "0123456789abcdef", map[string]string{"alertname": "QueueBacklog", "namespace": "shop", "hpa": "checkout"}),
				webhookTestAlert("firing", "fedcba9876543210", map[string]string{"alertname": "QueueBacklog", "namespace": "shop", "deployment": "email-worker"}),
			)),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
		},
		{
			name: "an HPA and a Deployment of the same name are distinct targets",
			body: webhookPayload(t, func(m map[string]any) {
				m["alerts"] = []any{
					webhookTestAlert("firing", "1", map[string]string{"alertname": "A", "namespace": "shop", "hpa": "web"}),
					webhookTestAlert("firing", "2", map[string]string{"alertname": "A", "namespace": "shop", "deployment": "web"}),
				}
			}),
			wantCode: http.StatusOK,
			wantWakes: []webhookCall{
				{Target{Namespace: "shop", HPA: "web"}, "alertmanager: A (1)"},
				{Target{Namespace: "shop", Deployment: "web"}, "alertmanager: A (2)"},
			},
		},
		{
			name: "alerts naming no target are ignored and counted",
			body: webhookPayload(t, webhookAddAlerts(
				webhookTestAlert("firing", "1", map[string]string{"alertname": "Watchdog"}),
				webhookTestAlert("firing", "2", map[string]string{"alertname": "NoTarget", "namespace": "shop"}),
				webhookTestAlert("firing", "3", map[string]string{"alertname": "NoNamespace", "hpa": "checkout"}),
				webhookTestAlert("resolved", "4", map[string]string{"alertname": "Watchdog"}),
			)),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
			check: func(t *testing.T, r webhookResponse) {
				if r.Ignored != 3 || r.Resolved != 2 || len(r.Woken) != 2 {
					t.Errorf("ignored %d, resolved %d, woken %v; want 3, 2, 2 targets", r.Ignored, r.Resolved, r.Woken)
				}
			},
		},
		{
			name: "only alerts naming nothing: 200, nothing woken",
			body: webhookPayload(t, func(m map[string]any) {
				m["alerts"] = []any{webhookTestAlert("firing", "1", map[string]string{"alertname": "Watchdog"})}
			}),
			wantCode: http.StatusOK,
			check: func(t *testing.T, r webhookResponse) {
				if r.Ignored != 1 || r.Woken == nil || len(r.Woken) != 0 || r.Errors == nil {
					t.Errorf("response = %+v, want ignored 1 and empty (not null) woken and errors", r)
				}
			},
		},
		{
			name:     "malformed JSON",
			body:     webhookPayload(t, nil)[:200],
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "trailing data after the JSON",
			body:     webhookPayload(t, nil) + "{}",
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "version 3",
			body:     webhookPayload(t, func(m map[string]any) { m["version"] = "3" }),
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "version missing",
			body:     webhookPayload(t, func(m map[string]any) { delete(m, "version") }),
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "version as a number",
			body:     webhookPayload(t, func(m map[string]any) { m["version"] = 4 }),
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "empty alerts",
			body:     webhookPayload(t, func(m map[string]any) { m["alerts"] = []any{} }),
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "no alerts field",
			body:     webhookPayload(t, func(m map[string]any) { delete(m, "alerts") }),
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "empty body",
			body:     "",
			wantCode: http.StatusBadRequest,
		},
		{
			name: "body over the default 1 MiB",
			body: webhookPayload(t, func(m map[string]any) {
				m["commonAnnotations"] = map[string]any{"padding": huge}
			}),
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "body over a configured MaxBody",
			body:     webhookPayload(t, nil),
			maxBody:  int64(len(webhookPayload(t, nil)) - 1),
			wantCode: http.StatusBadRequest,
		},
		{
			name:      "body exactly MaxBody is accepted",
			body:      webhookPayload(t, nil),
			maxBody:   int64(len(webhookPayload(t, nil))),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
		},
		{
			name: "an invalid namespace in one firing alert: the others are woken, it is reported",
			body: webhookPayload(t, webhookAddAlerts(
				webhookTestAlert("firing", "1", map[string]string{"alertname": "A", "namespace": "Shop_Front", "hpa": "web"}),
			)),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
			check:     webhookWantBadAlerts(`alert 3 (1): invalid target: namespace "Shop_Front"`),
		},
		{
			name: "an invalid name in one firing alert: the others are woken, it is reported",
			body: webhookPayload(t, webhookAddAlerts(
				webhookTestAlert("firing", "1", map[string]string{"alertname": "A", "namespace": "shop", "deployment": "web/../x"}),
			)),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
			check:     webhookWantBadAlerts(`alert 3 (1): invalid target: deployment name "web/../x"`),
		},
		{
			name: "an invalid name in a resolved alert is ignored",
			body: webhookPayload(t, webhookAddAlerts(
				webhookTestAlert("resolved", "1", map[string]string{"alertname": "A", "namespace": "Shop_Front", "hpa": "web"}),
			)),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
		},
		{
			name: "an alert naming both hpa and deployment: the opted-in HPA of the other alert is woken, the bad one reported",
			body: webhookPayload(t, func(m map[string]any) {
				m["alerts"] = []any{
					webhookTestAlert("firing", "1", map[string]string{"alertname": "A", "namespace": "shop", "hpa": "checkout"}),
					webhookTestAlert("firing", "2", map[string]string{"alertname": "A", "namespace": "shop", "hpa": "x", "deployment": "y"}),
				}
			}),
			wantCode:  http.StatusOK,
			wantWakes: []webhookCall{{checkout, "alertmanager: A (1)"}},
			check: func(t *testing.T, r webhookResponse) {
				t.Helper()
				if !reflect.DeepEqual(r.Woken, []Target{checkout}) {
					t.Errorf("woken = %+v, want [%+v]", r.Woken, checkout)
				}
				webhookWantBadAlerts(`alert 1 (2): labels name both hpa "x" and deployment "y"`)(t, r)
				if e := r.Errors[0]; len(r.Errors) == 1 && (e.Namespace != "shop" || e.HPA != "x" || e.Deployment != "y") {
					t.Errorf("error entry %+v does not carry the alert's labels", e)
				}
			},
		},
		{
			name: "an unknown alert status: the others are woken, it is reported",
			body: webhookPayload(t, webhookAddAlerts(
				webhookTestAlert("pending", "1", map[string]string{"alertname": "A", "namespace": "shop", "hpa": "web"}),
			)),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
			check:     webhookWantBadAlerts(`alert 3 (1): unknown status "pending"`),
		},
		{
			name: "every firing alert bad: 400 (a retry cannot fix it), each reported",
			body: webhookPayload(t, func(m map[string]any) {
				m["alerts"] = []any{
					webhookTestAlert("firing", "1", map[string]string{"alertname": "A", "namespace": "shop", "hpa": "x", "deployment": "y"}),
					webhookTestAlert("resolved", "2", map[string]string{"alertname": "A", "namespace": "shop", "hpa": "web"}),
					webhookTestAlert("firing", "3", map[string]string{"alertname": "A", "namespace": "Shop_Front", "hpa": "web"}),
				}
			}),
			wantCode: http.StatusBadRequest,
			check: func(t *testing.T, r webhookResponse) {
				t.Helper()
				webhookWantBadAlerts(`alert 0 (1): labels name both`, `alert 2 (3): invalid target`)(t, r)
				if r.Resolved != 1 || !strings.Contains(r.Error, "2 alerts") {
					t.Errorf("response = %+v; want 1 resolved and an error counting 2 bad alerts", r)
				}
			},
		},
		{
			name:       "no Authorization header",
			body:       webhookPayload(t, nil),
			auth:       webhookStrPtr(""),
			wantCode:   http.StatusUnauthorized,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"},
		},
		{
			name:       "wrong token",
			body:       webhookPayload(t, nil),
			auth:       webhookStrPtr("Bearer not-the-token"),
			wantCode:   http.StatusUnauthorized,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"},
		},
		{
			name:     "token with a suffix",
			body:     webhookPayload(t, nil),
			auth:     webhookStrPtr("Bearer " + webhookTestToken + "x"),
			wantCode: http.StatusUnauthorized,
		},
		{
			name:     "token prefix",
			body:     webhookPayload(t, nil),
			auth:     webhookStrPtr("Bearer " + webhookTestToken[:5]),
			wantCode: http.StatusUnauthorized,
		},
		{
			name:     "token under another scheme",
			body:     webhookPayload(t, nil),
			auth:     webhookStrPtr("Basic " + webhookTestToken),
			wantCode: http.StatusUnauthorized,
		},
		{
			name:     "bare token",
			body:     webhookPayload(t, nil),
			auth:     webhookStrPtr(webhookTestToken),
			wantCode: http.StatusUnauthorized,
		},
		{
			name:     "empty bearer",
			body:     webhookPayload(t, nil),
			auth:     webhookStrPtr("Bearer "),
			wantCode: http.StatusUnauthorized,
		},
		{
			name:      "the scheme is case-insensitive",
			body:      webhookPayload(t, nil),
			auth:      webhookStrPtr("bearer " + webhookTestToken),
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
		},
		{
			name:       "authentication comes before validation",
			body:       "not json",
			auth:       webhookStrPtr(""),
			wantCode:   http.StatusUnauthorized,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"},
		},
		{
			name:       "authentication comes before routing",
			path:       "/no/such/path",
			auth:       webhookStrPtr("Bearer wrong"),
			wantCode:   http.StatusUnauthorized,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"},
		},
		{
			name:       "authentication on the plain route",
			path:       "/wake/shop/hpa/checkout",
			auth:       webhookStrPtr(""),
			wantCode:   http.StatusUnauthorized,
			wantHeader: map[string]string{"WWW-Authenticate": "Bearer"},
		},
		{
			name:      "every target not found: 404",
			body:      webhookPayload(t, nil),
			errs:      map[Target]error{checkout: &NotFoundError{Target: checkout}, emailWorker: fmt.Errorf("lookup: %w", &NotFoundError{Target: emailWorker})},
			wantCode:  http.StatusNotFound,
			wantWakes: fixtureWakes,
			check: func(t *testing.T, r webhookResponse) {
				if len(r.Errors) != 2 || len(r.Woken) != 0 || r.Errors[0].Target != checkout || !strings.Contains(r.Errors[0].Error, "no opted-in HPA") {
					t.Errorf("response = %+v", r)
				}
			},
		},
		{
			name:      "one target not found: 200 with the error",
			body:      webhookPayload(t, nil),
			errs:      map[Target]error{emailWorker: &NotFoundError{Target: emailWorker}},
			wantCode:  http.StatusOK,
			wantWakes: fixtureWakes,
			check: func(t *testing.T, r webhookResponse) {
				if !reflect.DeepEqual(r.Woken, []Target{checkout}) || len(r.Errors) != 1 || r.Errors[0].Target != emailWorker {
					t.Errorf("response = %+v", r)
				}
			},
		},
		{
			name:       "not the leader: 503 naming the leader, and no further wakes",
			body:       webhookPayload(t, nil),
			errs:       map[Target]error{checkout: notLeader, emailWorker: notLeader},
			wantCode:   http.StatusServiceUnavailable,
			wantWakes:  fixtureWakes[:1],
			wantHeader: map[string]string{"X-Leader": leader},
			check: func(t *testing.T, r webhookResponse) {
				if r.Leader != leader || !strings.Contains(r.Error, leader) {
					t.Errorf("response = %+v, want the leader named", r)
				}
			},
		},
		{
			name:       "not the leader: Connection: close and Retry-After, so the next try reaches another replica",
			body:       webhookPayload(t, nil),
			errs:       map[Target]error{checkout: notLeader},
			wantCode:   http.StatusServiceUnavailable,
			wantWakes:  fixtureWakes[:1],
			wantHeader: map[string]string{"Connection": "close", "Retry-After": "1"},
		},
		{
			name:       "HPA cache not synced (after a failover): 503 with Retry-After, not 404",
			body:       webhookPayload(t, nil),
			errs:       map[Target]error{checkout: &NotSyncedError{}},
			wantCode:   http.StatusServiceUnavailable,
			wantWakes:  fixtureWakes[:1],
			wantHeader: map[string]string{"Retry-After": "1"},
		},
		{
			name:      "paused HPA: 409, which Alertmanager does not retry, naming the annotation",
			body:      webhookPayload(t, nil),
			errs:      map[Target]error{checkout: &RefusedError{Reason: "HPA shop/checkout is paused (" + AnnotationPaused + "=true)"}},
			wantCode:  http.StatusConflict,
			wantWakes: fixtureWakes,
			check: func(t *testing.T, r webhookResponse) {
				if !strings.Contains(r.Error, AnnotationPaused) || !strings.Contains(r.Error, "not retryable") {
					t.Errorf("response = %+v, want the paused annotation named", r)
				}
			},
		},
		{
			name:       "not the leader after a success: 503",
			body:       webhookPayload(t, nil),
			errs:       map[Target]error{emailWorker: fmt.Errorf("wrapped: %w", notLeader)},
			wantCode:   http.StatusServiceUnavailable,
			wantWakes:  fixtureWakes,
			wantHeader: map[string]string{"X-Leader": leader},
		},
		{
			name:       "not the leader, leader unknown: 503 without X-Leader",
			body:       webhookPayload(t, nil),
			errs:       map[Target]error{checkout: &NotLeaderError{}},
			wantCode:   http.StatusServiceUnavailable,
			wantWakes:  fixtureWakes[:1],
			wantHeader: map[string]string{"X-Leader": ""},
		},
		{
			name:      "any other failure: 500, so Alertmanager retries",
			body:      webhookPayload(t, nil),
			errs:      map[Target]error{checkout: errors.New("apiserver unavailable"), emailWorker: &NotFoundError{Target: emailWorker}},
			wantCode:  http.StatusInternalServerError,
			wantWakes: fixtureWakes,
			check: func(t *testing.T, r webhookResponse) {
				if len(r.Errors) != 2 || !strings.Contains(r.Errors[0].Error, "apiserver unavailable") {
					t.Errorf("response = %+v", r)
				}
			},
		},
		{
			name:      "POST /wake/{namespace}/hpa/{name}",
			path:      "/wake/shop/hpa/checkout",
			wantCode:  http.StatusOK,
			wantWakes: []webhookCall{{checkout, "POST /wake/shop/hpa/checkout"}},
			check: func(t *testing.T, r webhookResponse) {
				if !reflect.DeepEqual(r.Woken, []Target{checkout}) {
					t.Errorf("woken = %v", r.Woken)
				}
			},
		},
		{
			name:      "POST /wake/{namespace}/deployment/{name}",
			path:      "/wake/shop/deployment/email-worker",
			body:      "ignored",
			wantCode:  http.StatusOK,
			wantWakes: []webhookCall{{emailWorker, "POST /wake/shop/deployment/email-worker"}},
		},
		{
			name:      "a dotted name is a valid subdomain",
			path:      "/wake/billing/hpa/invoicer.v2",
			wantCode:  http.StatusOK,
			wantWakes: []webhookCall{{Target{Namespace: "billing", HPA: "invoicer.v2"}, "POST /wake/billing/hpa/invoicer.v2"}},
		},
		{
			name:      "plain route, not found",
			path:      "/wake/billing/hpa/invoicer",
			errs:      map[Target]error{invoicer: &NotFoundError{Target: invoicer}},
			wantCode:  http.StatusNotFound,
			wantWakes: []webhookCall{{invoicer, "POST /wake/billing/hpa/invoicer"}},
		},
		{
			name:       "plain route, not the leader",
			path:       "/wake/shop/deployment/email-worker",
			errs:       map[Target]error{emailWorker: notLeader},
			wantCode:   http.StatusServiceUnavailable,
			wantWakes:  []webhookCall{{emailWorker, "POST /wake/shop/deployment/email-worker"}},
			wantHeader: map[string]string{"X-Leader": leader},
		},
		{
			name:      "plain route, other failure",
			path:      "/wake/shop/hpa/checkout",
			errs:      map[Target]error{checkout: errors.New("boom")},
			wantCode:  http.StatusInternalServerError,
			wantWakes: []webhookCall{{checkout, "POST /wake/shop/hpa/checkout"}},
		},
		{
			name:     "plain route, namespace not a DNS-1123 label",
			path:     "/wake/shop.eu/hpa/checkout",
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "plain route, upper-case name",
			path:     "/wake/shop/deployment/Email",
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "plain route, escaped slash in the name",
			path:     "/wake/shop/hpa/a%2Fb",
			wantCode: http.StatusBadRequest,
		},
		{
			name:     "plain route, name too long",
			path:     "/wake/shop/hpa/" + strings.Repeat("a", 254),
			wantCode: http.StatusBadRequest,
		},
		{
			name:       "GET /alertmanager",
			method:     http.MethodGet,
			wantCode:   http.StatusMethodNotAllowed,
			wantHeader: map[string]string{"Allow": "POST"},
		},
		{
			name:       "PUT on a plain route",
			method:     http.MethodPut,
			path:       "/wake/shop/hpa/checkout",
			wantCode:   http.StatusMethodNotAllowed,
			wantHeader: map[string]string{"Allow": "POST"},
		},
		{
			name:     "DELETE on a plain route",
			method:   http.MethodDelete,
			path:     "/wake/shop/deployment/email-worker",
			wantCode: http.StatusMethodNotAllowed,
		},
		{
			name:     "unknown path",
			path:     "/alertmanager/v2",
			wantCode: http.StatusNotFound,
		},
		{
			name:     "unknown kind",
			path:     "/wake/shop/statefulset/db",
			wantCode: http.StatusNotFound,
		},
		{
			name:     "missing name",
			path:     "/wake/shop/hpa/",
			wantCode: http.StatusNotFound,
		},
		{
			name:     "root",
			path:     "/",
			method:   http.MethodGet,
			wantCode: http.StatusNotFound,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			waker := &webhookFakeWaker{errs: tc.errs}
			h, err := NewWebhook(WebhookOptions{Waker: waker, Token: webhookTestToken, MaxBody: tc.maxBody})
			if err != nil {
				t.Fatalf("NewWebhook: %v", err)
			}
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/alertmanager"
			}
			req := httptest.NewRequest(method, path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if tc.auth == nil {
				req.Header.Set("Authorization", "Bearer "+webhookTestToken)
			} else if *tc.auth != "" {
				req.Header.Set("Authorization", *tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tc.wantCode {
				t.Errorf("status = %d, want %d; body %s", rec.Code, tc.wantCode, rec.Body)
			}
			if got := waker.recorded(); !reflect.DeepEqual(got, tc.wantWakes) {
				t.Errorf("wakes = %+v, want %+v", got, tc.wantWakes)
			}
			for k, v := range tc.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if strings.Contains(rec.Body.String(), webhookTestToken) {
				t.Errorf("response contains the token: %s", rec.Body)
			}
			var r webhookResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatalf("response is not JSON: %v: %s", err, rec.Body)
			}
			if rec.Code != http.StatusOK && r.Error == "" {
				t.Errorf("status %d without an error message: %s", rec.Code, rec.Body)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// webhookWantBadAlerts checks that the response's errors are exactly the bad alerts given, in order, each by a prefix of its message.
func webhookWantBadAlerts(prefixes ...string) func(t *testing.T, r webhookResponse) {
	return func(t *testing.T, r webhookResponse) {
		t.Helper()
		if len(r.Errors) != len(prefixes) {
			t.Fatalf("errors = %+v, want %d", r.Errors, len(prefixes))
		}
		for i, p := range prefixes {
			if !strings.HasPrefix(r.Errors[i].Error, p) {
				t.Errorf("errors[%d] = %q, want prefix %q", i, r.Errors[i].Error, p)
			}
		}
	}
}

// TestWebhookFixture checks the stored Alertmanager payload still has the shape the table relies on.
func TestWebhookFixture(t *testing.T) {
	b, err := os.ReadFile(webhookFixture)
	if err != nil {
		t.Fatal(err)
	}
	var m amMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Version != "4" || m.Status != "firing" || m.Receiver == "" || m.GroupKey == "" || m.ExternalURL == "" || len(m.Alerts) != 3 {
		t.Fatalf("fixture = %+v", m)
	}
	statuses := map[string]int{}
	for _, a := range m.Alerts {
		statuses[a.Status]++
		if a.Fingerprint == "" || a.StartsAt.IsZero() || a.Labels["alertname"] == "" {
			t.Errorf("alert %+v lacks Alertmanager's fields", a)
		}
	}
	if statuses["firing"] != 2 || statuses["resolved"] != 1 {
		t.Errorf("statuses = %v, want 2 firing and 1 resolved", statuses)
	}
}

func TestWebhookClientCertificate(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ca, caKey := webhookTestCA(t, "wake-clients", now)
	other, otherKey := webhookTestCA(t, "front-proxy", now)
	trusted := webhookTestLeaf(t, ca, caKey, now, x509.ExtKeyUsageClientAuth)
	serverOnly := webhookTestLeaf(t, ca, caKey, now, x509.ExtKeyUsageServerAuth)
	foreign := webhookTestLeaf(t, other, otherKey, now, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	tests := []struct {
		name     string
		opts     WebhookOptions
		tls      *tls.ConnectionState
		auth     string
		wantCode int
	}{
		{"verified certificate from ClientCAs", WebhookOptions{ClientCAs: pool}, webhookTestConn(trusted, ca, true), "", http.StatusOK},
		{"certificate the TLS layer did not verify", WebhookOptions{ClientCAs: pool}, webhookTestConn(trusted, ca, false), "", http.StatusUnauthorized},
		{"certificate verified against another CA", WebhookOptions{ClientCAs: pool}, webhookTestConn(foreign, other, true), "", http.StatusUnauthorized},
		{"certificate without client auth usage", WebhookOptions{ClientCAs: pool}, webhookTestConn(serverOnly, ca, true), "", http.StatusUnauthorized},
		{"expired certificate", WebhookOptions{ClientCAs: pool, Now: func() time.Time { return now.Add(48 * time.Hour) }}, webhookTestConn(trusted, ca, true), "", http.StatusUnauthorized},
		{"plain HTTP", WebhookOptions{ClientCAs: pool}, nil, "", http.StatusUnauthorized},
		{"no token configured: an empty bearer is refused", WebhookOptions{ClientCAs: pool}, nil, "Bearer ", http.StatusUnauthorized},
		{"certificate ignored without ClientCAs", WebhookOptions{Token: webhookTestToken}, webhookTestConn(trusted, ca, true), "", http.StatusUnauthorized},
		{"token still works with ClientCAs", WebhookOptions{Token: webhookTestToken, ClientCAs: pool}, nil, "Bearer " + webhookTestToken, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			waker := &webhookFakeWaker{}
			tc.opts.Waker = waker
			if tc.opts.Now == nil {
				tc.opts.Now = func() time.Time { return now }
			}
			h, err := NewWebhook(tc.opts)
			if err != nil {
				t.Fatalf("NewWebhook: %v", err)
			}
			req := httptest.NewRequest(http.MethodPost, "/wake/shop/hpa/checkout", nil)
			req.TLS = tc.tls
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantCode {
				t.Errorf("status = %d, want %d; body %s", rec.Code, tc.wantCode, rec.Body)
			}
			wantCalls := 0
			if tc.wantCode == http.StatusOK {
				wantCalls = 1
			}
			if got := len(waker.recorded()); got != wantCalls {
				t.Errorf("%d wakes, want %d", got, wantCalls)
			}
			if tc.wantCode == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

func TestNewWebhookOptions(t *testing.T) {
	w := &webhookFakeWaker{}
	for name, o := range map[string]WebhookOptions{
		"no Waker":               {Token: webhookTestToken},
		"no Token nor ClientCAs": {Waker: w},
		"negative MaxBody":       {Waker: w, Token: webhookTestToken, MaxBody: -1},
		"whitespace in Token":    {Waker: w, Token: " " + webhookTestToken},
	} {
		if _, err := NewWebhook(o); err == nil {
			t.Errorf("%s: NewWebhook succeeded, want an error", name)
		} else if strings.Contains(err.Error(), webhookTestToken) {
			t.Errorf("%s: error %q contains the token", name, err)
		}
	}
	if _, err := NewWebhook(WebhookOptions{Waker: w, ClientCAs: x509.NewCertPool()}); err != nil {
		t.Errorf("ClientCAs without a Token: %v", err)
	}
}

func TestWebhookErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&NotFoundError{Target: Target{Namespace: "shop", HPA: "checkout"}}, "no opted-in HPA matches hpa shop/checkout"},
		{&NotFoundError{Target: Target{Namespace: "shop", Deployment: "email-worker"}}, "no opted-in HPA matches deployment shop/email-worker"},
		{&NotLeaderError{Leader: "pod-a"}, `this replica is not the leader; the leader is "pod-a"`},
		{&NotLeaderError{}, "this replica is not the leader, and the leader is unknown"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func webhookStrPtr(s string) *string { return &s }

// webhookTestCA returns a self-signed CA certificate and its key.
func webhookTestCA(t *testing.T, name string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// webhookTestLeaf returns a certificate valid for a day, signed by ca, with the given extended key usage.
func webhookTestLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "alertmanager"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// webhookTestConn is the TLS state of a connection that presented leaf, as the TLS layer would record it.
func webhookTestConn(leaf, ca *x509.Certificate, verified bool) *tls.ConnectionState {
	cs := &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}
	if verified {
		cs.VerifiedChains = [][]*x509.Certificate{{leaf, ca}}
	}
	return cs
}
