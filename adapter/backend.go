package adapter

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promql-adapter/promql-adapter/coalesce"
	"github.com/promql-adapter/promql-adapter/naming"
)

// Backends finds the Querier of a backend declared in the rule file, by name.
type Backends interface {
	// Querier is the named backend's Querier; false when no such backend is built.
	Querier(name string) (Querier, bool)
}

// querier is the Querier of backend name ("" is the default, Options.Querier); a 503 that names
// the backend when it is not built, which a rule file that compiled cannot normally cause.
func (p *Provider) querier(name string) (Querier, error) {
	if name == "" || name == naming.DefaultBackend {
		return p.opts.Querier, nil
	}
	if p.opts.Backends != nil {
		if q, ok := p.opts.Backends.Querier(name); ok {
			return q, nil
		}
	}
	return nil, newStatus(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
		"backend %q is not available: the rule names it, but the adapter has no client for it (is it declared under backends: in the rule file that serves?)", name)
}

// backendKey is a backend's name in coalescing keys: coalesce.DefaultBackend for the default.
func backendKey(name string) string {
	if name == "" {
		return coalesce.DefaultBackend
	}
	return name
}

// backendNote is " (backend NAME)" for a metric on a declared backend, for error messages; "" for the default.
func backendNote(m *naming.Metric) string {
	if m.Backend == "" {
		return ""
	}
	return " (backend " + m.Backend + ")"
}

// DiscoveryKey is the key under which Discovered lists a discovery rule's series names: its series
// selector, after its backend and a NUL byte when the backend is not the default.
func DiscoveryKey(t *naming.Template) string {
	if b := t.Backend(); b != "" {
		return b + "\x00" + t.Series
	}
	return t.Series
}
