package naming

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"golang.org/x/net/http/httpguts"
)

// DefaultBackend is the name of the backend the --prometheus-* flags define; rules without a
// backend read it, and a rule file may not declare a backend of this name.
const DefaultBackend = "default"

// BackendConfig declares one Prometheus-compatible backend in a rule file.
type BackendConfig struct {
	// Name is what rules call the backend by.
	Name string `json:"name"`
	// URL is the backend's HTTP API base URL (http or https).
	URL string `json:"url"`
	// Timeout bounds every query (a Prometheus duration); by default --prometheus-timeout.
	Timeout string `json:"timeout,omitempty"`
	// ClientConfig is a file holding a Prometheus http_config block (TLS, auth, proxy); a relative
	// path is relative to the rule file's directory.
	ClientConfig string `json:"clientConfig,omitempty"`
	// Headers are sent on every call, e.g. X-Scope-OrgID.
	Headers map[string]string `json:"headers,omitempty"`
	// MaxInFlight bounds the queries running at once (0: no limit); by default --prometheus-max-inflight.
	MaxInFlight *int `json:"maxInFlight,omitempty"`
	// MaxQueue bounds the queries waiting for a slot; by default --prometheus-max-queue.
	MaxQueue *int `json:"maxQueue,omitempty"`
}

// Backend is a validated backend declaration. Zero Timeout and nil limits mean the flags' values.
type Backend struct {
	Name         string
	URL          string
	Timeout      time.Duration
	ClientConfig string // as written; the caller resolves it against the rule file's directory
	Headers      map[string]string
	MaxInFlight  *int
	MaxQueue     *int
}

// BackendError is a problem with one field of one backend declaration.
type BackendError struct {
	Index int    // position in the backends list, from 0
	Name  string // the backend's name, if it has one
	Field string // the field at fault
	Err   error
}

func (e *BackendError) Error() string {
	who := fmt.Sprintf("backend %d", e.Index)
	if e.Name != "" {
		who += fmt.Sprintf(" (%s)", e.Name)
	}
	return fmt.Sprintf("%s: field %s: %v", who, e.Field, e.Err)
}

func (e *BackendError) Unwrap() error { return e.Err }

var backendNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$`)

// compileBackends validates the declarations; errors name the backend and field, all at once.
func compileBackends(cfgs []BackendConfig) ([]Backend, error) {
	var out []Backend
	var errs []error
	seen := map[string]int{}
	for i, c := range cfgs {
		fail := func(field string, err error) {
			errs = append(errs, &BackendError{Index: i, Name: c.Name, Field: field, Err: err})
		}
		n := len(errs)
		switch j, dup := seen[c.Name]; {
		case c.Name == "":
			fail("name", errors.New("required"))
		case c.Name == DefaultBackend:
			fail("name", fmt.Errorf("%q is the backend the --prometheus-* flags define; choose another name", DefaultBackend))
		case !backendNameRE.MatchString(c.Name):
			fail("name", fmt.Errorf("%q: use lower-case letters, digits, _ . - (starting and ending with a letter or digit)", c.Name))
		case dup:
			fail("name", fmt.Errorf("%q is already declared by backend %d", c.Name, j))
		default:
			seen[c.Name] = i
		}
		if err := checkBackendURL(c.URL); err != nil {
			fail("url", err)
		}
		b := Backend{Name: c.Name, URL: c.URL, ClientConfig: c.ClientConfig, Headers: c.Headers, MaxInFlight: c.MaxInFlight, MaxQueue: c.MaxQueue}
		if c.Timeout != "" {
			d, err := model.ParseDuration(c.Timeout)
			switch {
			case err != nil:
				fail("timeout", err)
			case d <= 0:
				fail("timeout", errors.New("must be positive"))
			}
			b.Timeout = time.Duration(d)
		}
		for _, k := range sortedKeys(c.Headers) {
			if !httpguts.ValidHeaderFieldName(k) {
				fail("headers", fmt.Errorf("%q is not a valid header name", k))
			} else if !httpguts.ValidHeaderFieldValue(c.Headers[k]) {
				fail("headers", fmt.Errorf("the value of %s holds characters a header cannot carry", http.CanonicalHeaderKey(k)))
			}
		}
		if c.MaxInFlight != nil && *c.MaxInFlight < 0 {
			fail("maxInFlight", fmt.Errorf("%d is negative (0 means no limit)", *c.MaxInFlight))
		}
		if c.MaxQueue != nil && *c.MaxQueue < 0 {
			fail("maxQueue", fmt.Errorf("%d is negative", *c.MaxQueue))
		}
		if len(errs) == n {
			out = append(out, b)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func checkBackendURL(raw string) error {
	if raw == "" {
		return errors.New("required, e.g. http://prometheus.monitoring.svc:9090")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: want an http:// or https:// URL", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q carries credentials; put them in clientConfig (basic_auth) instead", u.Redacted())
	}
	return nil
}

// checkRuleBackend refuses a rule backend that is not declared; "" and DefaultBackend are the default.
func checkRuleBackend(name string, declared []string) error {
	if name == "" || name == DefaultBackend || slices.Contains(declared, name) {
		return nil
	}
	if len(declared) == 0 {
		return fmt.Errorf("backend %q is not declared: the file declares no backends (add it under backends:, or leave backend empty for the default)", name)
	}
	return fmt.Errorf("backend %q is not declared; declared: %s (or leave it empty for the default)", name, strings.Join(declared, ", "))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
