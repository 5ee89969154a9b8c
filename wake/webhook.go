package wake

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
)

// Target names one thing to wake: an opted-in HPA by its name, or by the Deployment it scales; never both.
type Target struct {
	Namespace  string `json:"namespace"`            // Namespace of the HPA or Deployment.
	HPA        string `json:"hpa,omitempty"`        // HPA names the HorizontalPodAutoscaler to wake.
	Deployment string `json:"deployment,omitempty"` // Deployment names the Deployment whose opted-in HPA to wake.
}

// Waker wakes a target scaled to zero; the controller implements it.
type Waker interface {
	Wake(ctx context.Context, t Target, reason string) error // Wake returns *NotFoundError or *NotLeaderError (possibly wrapped) when it cannot.
}

// NotFoundError reports that no opted-in HPA matches a target.
type NotFoundError struct {
	Target Target // Target is the target nothing matched.
}

// Error describes the unmatched target.
func (e *NotFoundError) Error() string {
	return "no opted-in HPA matches " + webhookDescribe(e.Target)
}

// NotLeaderError reports that this replica is not the leader; Leader is the leader's identity, empty when unknown.
type NotLeaderError struct {
	Leader string // Leader is the identity of the current leader, empty when unknown.
}

// Error names the leader.
func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return "this replica is not the leader, and the leader is unknown"
	}
	return fmt.Sprintf("this replica is not the leader; the leader is %q", e.Leader)
}

// NotSyncedError reports that the HPA cache has not synced yet (e.g. right after a failover): retry shortly.
type NotSyncedError struct{}

// Error says what to do.
func (e *NotSyncedError) Error() string {
	return "this replica leads but has not synced its HPA cache yet; retry shortly"
}

// RefusedError reports a target that exists but must not be woken by a push; retrying does not help.
type RefusedError struct {
	Reason string // Reason says why and what to change.
}

// Error is the reason.
func (e *RefusedError) Error() string { return e.Reason }

// WebhookOptions configures NewWebhook.
type WebhookOptions struct {
	Waker     Waker          // Waker wakes targets; required.
	Token     string         // Token is the bearer token callers must send; required unless ClientCAs is set.
	ClientCAs *x509.CertPool // ClientCAs, when set, also admits a TLS-verified client certificate that chains to this pool.
	// Credentials, when set, replaces Token and ClientCAs with their current values on every request (files reloaded on change).
	Credentials func() (token string, clientCAs *x509.CertPool)
	MaxBody     int64            // MaxBody limits the Alertmanager request body in bytes; 0 means 1 MiB.
	Now         func() time.Time // Now is the clock used to check client certificates; nil means time.Now.
}

// webhookDefaultMaxBody is the Alertmanager body limit when WebhookOptions.MaxBody is 0.
const webhookDefaultMaxBody = 1 << 20

// NewWebhook returns the push-wake handler: POST /alertmanager, POST /wake/{namespace}/hpa/{name} and POST /wake/{namespace}/deployment/{name}.
func NewWebhook(o WebhookOptions) (http.Handler, error) {
	if o.Waker == nil {
		return nil, errors.New("wake webhook: Waker is required")
	}
	if o.Credentials == nil {
		token, pool := o.Token, o.ClientCAs
		o.Credentials = func() (string, *x509.CertPool) { return token, pool }
	}
	if token, pool := o.Credentials(); token == "" && pool == nil {
		return nil, errors.New("wake webhook: a bearer Token or ClientCAs is required")
	} else if token != strings.TrimSpace(token) || strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("wake webhook: Token must not contain whitespace")
	}
	if o.MaxBody < 0 {
		return nil, fmt.Errorf("wake webhook: MaxBody %d is negative", o.MaxBody)
	}
	if o.MaxBody == 0 {
		o.MaxBody = webhookDefaultMaxBody
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &webhook{waker: o.Waker, creds: o.Credentials, maxBody: o.MaxBody, now: o.Now}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /alertmanager", h.alertmanager)
	mux.HandleFunc("POST /wake/{namespace}/hpa/{name}", h.wakeHPA)
	mux.HandleFunc("POST /wake/{namespace}/deployment/{name}", h.wakeDeployment)
	// The same paths without a method answer 405 in JSON; everything else answers 404 in JSON.
	mux.HandleFunc("/alertmanager", webhookMethodNotAllowed)
	mux.HandleFunc("/wake/{namespace}/hpa/{name}", webhookMethodNotAllowed)
	mux.HandleFunc("/wake/{namespace}/deployment/{name}", webhookMethodNotAllowed)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		webhookWriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h.authenticate(mux), nil
}

// webhook serves the push-wake endpoints.
type webhook struct {
	waker   Waker
	creds   func() (string, *x509.CertPool) // the current token ("": none accepted) and client CAs (nil: none)
	maxBody int64
	now     func() time.Time
}

// authenticate admits a request with the bearer token or a verified client certificate, and answers 401 otherwise.
func (h *webhook) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, pool := h.creds()
		if bearerOK(r, token) || h.clientCertOK(r, pool) {
			next.ServeHTTP(w, r)
			return
		}
		klog.V(2).InfoS("wake webhook: unauthenticated request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", "Bearer")
		webhookWriteError(w, http.StatusUnauthorized, "unauthorized: send Authorization: Bearer <token> or a trusted client certificate")
	})
}

// bearerOK reports whether the request carries the configured bearer token.
func bearerOK(r *http.Request, want string) bool {
	if want == "" {
		return false
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return false
	}
	// Comparing digests keeps the comparison constant-time in the token's length too.
	sum, wantSum := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(sum[:], wantSum[:]) == 1
}

// clientCertOK reports whether the TLS layer verified a client certificate that also chains to ClientCAs.
func (h *webhook) clientCertOK(r *http.Request, clientCAs *x509.CertPool) bool {
	if clientCAs == nil || r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	// The listener may trust other client CAs (an aggregated API server trusts its front proxy's), so check ours.
	intermediates := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	_, err := r.TLS.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         clientCAs,
		Intermediates: intermediates,
		CurrentTime:   h.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		klog.V(2).InfoS("wake webhook: client certificate not trusted", "subject", r.TLS.PeerCertificates[0].Subject.String(), "err", err)
		return false
	}
	return true
}

// amMessage is Alertmanager's webhook payload, version 4.
type amMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

// amAlert is one alert of an Alertmanager webhook payload.
type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// webhookWake is one target to wake and why.
type webhookWake struct {
	target Target
	reason string
}

// alertmanager wakes every distinct target named by a firing alert of an Alertmanager notification.
// A bad alert (unknown status, both hpa and deployment, an invalid name) is reported in the answer's
// errors and the other alerts are acted on. Only a notification in which no firing alert names a
// valid target, and at least one is bad, is refused with 400: Alertmanager does not retry a 4xx, and
// sending the same alerts again cannot fix their labels; a 5xx would make it retry in vain.
func (h *webhook) alertmanager(w http.ResponseWriter, r *http.Request) {
	wakes, res, err := h.readAlertmanager(w, r)
	if err == nil && len(wakes) == 0 && len(res.Errors) > 0 {
		err = fmt.Errorf("%d alerts are bad and none names a valid target; fix the alert rules' labels", len(res.Errors))
	}
	if err != nil {
		klog.V(1).InfoS("wake webhook: Alertmanager notification refused", "err", err)
		res.Error = err.Error()
		if res.Errors == nil {
			res.Errors = []webhookTargetError{}
		}
		if res.Woken == nil {
			res.Woken = []Target{}
		}
		webhookWriteJSON(w, http.StatusBadRequest, res)
		return
	}
	h.wakeAll(r.Context(), w, wakes, res)
}

// readAlertmanager reads and validates a notification and returns the distinct targets of its firing
// alerts; each bad alert is in the result's Errors. The error is for a notification that is not one.
func (h *webhook) readAlertmanager(w http.ResponseWriter, r *http.Request) ([]webhookWake, webhookResult, error) {
	var res webhookResult
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, res, fmt.Errorf("request body exceeds %d bytes", h.maxBody)
		}
		return nil, res, fmt.Errorf("read request body: %w", err)
	}
	var m amMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, res, fmt.Errorf("decode Alertmanager notification: %w", err)
	}
	if m.Version != "4" {
		return nil, res, fmt.Errorf("unsupported Alertmanager webhook version %q, want \"4\"", m.Version)
	}
	if len(m.Alerts) == 0 {
		return nil, res, errors.New("notification has no alerts")
	}
	var wakes []webhookWake
	seen := make(map[Target]bool)
	bad := func(i int, a amAlert, err error) {
		err = fmt.Errorf("alert %d (%s): %w", i, a.Fingerprint, err)
		klog.V(1).InfoS("wake webhook: bad alert skipped", "err", err, "alertname", a.Labels["alertname"])
		res.Errors = append(res.Errors, webhookTargetError{
			Target: Target{Namespace: a.Labels["namespace"], HPA: a.Labels["hpa"], Deployment: a.Labels["deployment"]},
			Error:  err.Error(),
		})
	}
	for i, a := range m.Alerts {
		switch a.Status {
		case "resolved":
			res.Resolved++
			continue
		case "firing":
		default:
			bad(i, a, fmt.Errorf("unknown status %q", a.Status))
			continue
		}
		t, named, err := webhookAlertTarget(a.Labels)
		if err != nil {
			bad(i, a, err)
			continue
		}
		if !named {
			res.Ignored++
			continue
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		wakes = append(wakes, webhookWake{target: t, reason: fmt.Sprintf("alertmanager: %s (%s)", a.Labels["alertname"], a.Fingerprint)})
	}
	return wakes, res, nil
}

// webhookAlertTarget returns the target an alert's labels name: namespace with hpa or deployment; named is false when they name neither.
func webhookAlertTarget(l map[string]string) (t Target, named bool, err error) {
	t = Target{Namespace: l["namespace"], HPA: l["hpa"], Deployment: l["deployment"]}
	if t.Namespace == "" || (t.HPA == "" && t.Deployment == "") {
		return Target{}, false, nil
	}
	if t.HPA != "" && t.Deployment != "" {
		return Target{}, false, fmt.Errorf("labels name both hpa %q and deployment %q; keep one", t.HPA, t.Deployment)
	}
	if err := webhookValidate(t); err != nil {
		return Target{}, false, err
	}
	return t, true, nil
}

// webhookValidate checks a target's namespace and name are valid Kubernetes names.
func webhookValidate(t Target) error {
	var msgs []string
	for _, m := range validation.IsDNS1123Label(t.Namespace) {
		msgs = append(msgs, fmt.Sprintf("namespace %q: %s", t.Namespace, m))
	}
	kind, name := "hpa", t.HPA
	if t.Deployment != "" {
		kind, name = "deployment", t.Deployment
	}
	for _, m := range validation.IsDNS1123Subdomain(name) {
		msgs = append(msgs, fmt.Sprintf("%s name %q: %s", kind, name, m))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("invalid target: %s", strings.Join(msgs, "; "))
	}
	return nil
}

// wakeHPA serves POST /wake/{namespace}/hpa/{name}.
func (h *webhook) wakeHPA(w http.ResponseWriter, r *http.Request) {
	h.wakeOne(w, r, Target{Namespace: r.PathValue("namespace"), HPA: r.PathValue("name")})
}

// wakeDeployment serves POST /wake/{namespace}/deployment/{name}.
func (h *webhook) wakeDeployment(w http.ResponseWriter, r *http.Request) {
	h.wakeOne(w, r, Target{Namespace: r.PathValue("namespace"), Deployment: r.PathValue("name")})
}

// wakeOne validates and wakes the one target of a plain POST.
func (h *webhook) wakeOne(w http.ResponseWriter, r *http.Request, t Target) {
	if err := webhookValidate(t); err != nil {
		webhookWriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	kind, name := "hpa", t.HPA
	if t.Deployment != "" {
		kind, name = "deployment", t.Deployment
	}
	reason := fmt.Sprintf("POST /wake/%s/%s/%s", t.Namespace, kind, name)
	h.wakeAll(r.Context(), w, []webhookWake{{target: t, reason: reason}}, webhookResult{})
}

// webhookResult is the JSON answer to a wake request.
type webhookResult struct {
	Error    string               `json:"error,omitempty"`
	Leader   string               `json:"leader,omitempty"`
	Woken    []Target             `json:"woken"`
	Ignored  int                  `json:"ignored"`
	Resolved int                  `json:"resolved"`
	Errors   []webhookTargetError `json:"errors"`
}

// webhookTargetError is a target that could not be woken, or a bad alert and the target its labels name.
type webhookTargetError struct {
	Target
	Error string `json:"error"`
}

// wakeAll wakes targets in order and answers 503 if this replica is not the leader or not synced yet (retryable),
// 500 on any other failure, 409 if a target refused (paused, invalid annotations: not retryable), 404 if no target
// matched an opted-in HPA, and 200 otherwise.
func (h *webhook) wakeAll(ctx context.Context, w http.ResponseWriter, wakes []webhookWake, res webhookResult) {
	res.Woken = []Target{}
	if res.Errors == nil { // bad alerts of the notification come first
		res.Errors = []webhookTargetError{}
	}
	notFound, failed, refused, firstRefused := 0, 0, 0, ""
	var notLeader *NotLeaderError
	var notSynced *NotSyncedError
	for _, wk := range wakes {
		err := h.waker.Wake(ctx, wk.target, wk.reason)
		if err == nil {
			klog.V(1).InfoS("wake webhook: woken", "target", webhookDescribe(wk.target), "reason", wk.reason)
			res.Woken = append(res.Woken, wk.target)
			continue
		}
		err = fmt.Errorf("wake %s: %w", webhookDescribe(wk.target), err)
		res.Errors = append(res.Errors, webhookTargetError{Target: wk.target, Error: err.Error()})
		if errors.As(err, &notLeader) {
			// Every other target would fail the same way on a replica that is not the leader.
			klog.V(1).InfoS("wake webhook: not the leader", "leader", notLeader.Leader, "reason", wk.reason)
			break
		}
		if errors.As(err, &notSynced) {
			klog.V(1).InfoS("wake webhook: HPA cache not synced yet", "reason", wk.reason)
			break
		}
		var re *RefusedError
		if errors.As(err, &re) {
			if refused++; refused == 1 {
				firstRefused = re.Reason
			}
			klog.V(1).InfoS("wake webhook: refused", "target", webhookDescribe(wk.target), "err", re.Reason)
			continue
		}
		var nf *NotFoundError
		if errors.As(err, &nf) {
			notFound++
			klog.V(1).InfoS("wake webhook: no opted-in HPA", "target", webhookDescribe(wk.target), "reason", wk.reason)
			continue
		}
		failed++
		klog.ErrorS(err, "wake webhook: wake failed", "reason", wk.reason)
	}

	status := http.StatusOK
	switch {
	case notLeader != nil:
		status = http.StatusServiceUnavailable
		res.Leader = notLeader.Leader
		res.Error = notLeader.Error()
		if notLeader.Leader != "" {
			w.Header().Set("X-Leader", notLeader.Leader)
		}
		// A client that keeps its connection would keep reaching this standby behind a Service.
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
	case notSynced != nil:
		status = http.StatusServiceUnavailable
		res.Error = notSynced.Error()
		w.Header().Set("Retry-After", "1")
	case failed > 0:
		status = http.StatusInternalServerError
		res.Error = fmt.Sprintf("%d of %d targets failed to wake", failed, len(wakes))
	case refused > 0:
		status = http.StatusConflict
		res.Error = fmt.Sprintf("%d of %d targets refused a push (not retryable): %s", refused, len(wakes), firstRefused)
	case len(wakes) > 0 && notFound == len(wakes):
		status = http.StatusNotFound
		res.Error = "no target matches an opted-in HPA"
	}
	webhookWriteJSON(w, status, res)
}

// webhookMethodNotAllowed answers 405 for a known path with a method other than POST.
func webhookMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	webhookWriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use POST")
}

// webhookWriteError answers status with a JSON error message.
func webhookWriteError(w http.ResponseWriter, status int, msg string) {
	webhookWriteJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// webhookWriteJSON answers status with v as JSON.
func webhookWriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		klog.ErrorS(err, "wake webhook: encode response")
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// webhookDescribe renders a target as "hpa ns/name" or "deployment ns/name".
func webhookDescribe(t Target) string {
	if t.Deployment != "" {
		return "deployment " + t.Namespace + "/" + t.Deployment
	}
	return "hpa " + t.Namespace + "/" + t.HPA
}
