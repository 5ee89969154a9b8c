package naming

import (
	"fmt"
	"regexp"
	"strings"

	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultMaxSelectorBytes bounds the escaped values of one metric label selector requirement
// (key in (a,b,...)), the size of the regular expression it becomes.
const DefaultMaxSelectorBytes = 8 << 10

// ValidateNamespace refuses a request namespace that Kubernetes could not hold: namespaces are
// DNS-1123 labels. An empty namespace (cluster scope) is valid.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return nil
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("namespace %q is not a valid Kubernetes namespace name: %s", ns, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateObjectName refuses an object name that Kubernetes could not hold for gr: services are
// DNS-1035 labels, namespaces DNS-1123 labels, every other resource (built-in or custom) a DNS-1123
// subdomain, as the API server validates them.
func ValidateObjectName(gr schema.GroupResource, name string) error {
	var errs []string
	switch {
	case gr.Group == "" && gr.Resource == "namespaces":
		errs = validation.IsDNS1123Label(name)
	case gr.Group == "" && gr.Resource == "services":
		errs = validation.IsDNS1035Label(name)
	default:
		errs = validation.IsDNS1123Subdomain(name)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%q is not a valid name for %s: %s", name, gr, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateSelector refuses metric label selectors that would select by the metric name
// (__name__, which the rule fixes) or whose value list becomes a regular expression longer than
// maxBytes once escaped (0 means DefaultMaxSelectorBytes).
func ValidateSelector(sel k8slabels.Selector, maxBytes int) error {
	if sel == nil {
		return nil
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxSelectorBytes
	}
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		if r.Key() == "__name__" {
			return fmt.Errorf("selector key %q is refused: the rule's query fixes the metric name", r.Key())
		}
		if n := EscapedBytes(r.ValuesUnsorted()); n > maxBytes {
			return fmt.Errorf("selector on %q: %d values make a %d-byte regular expression, over the %d-byte limit", r.Key(), r.Values().Len(), n, maxBytes)
		}
	}
	return nil
}

// EscapedBytes is the length of the alternation a|b|... of values with regular-expression
// metacharacters escaped, as a =~ matcher carries it.
func EscapedBytes(values []string) int {
	n := 0
	for i, v := range values {
		if i > 0 {
			n++
		}
		n += len(regexp.QuoteMeta(v))
	}
	return n
}
