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
	if len(ns) > validation.DNS1123LabelMaxLength {
		return fmt.Errorf("namespace %s is not a valid Kubernetes namespace name: longer than %d characters", shown(ns), validation.DNS1123LabelMaxLength)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("namespace %s is not a valid Kubernetes namespace name: %s", shown(ns), strings.Join(errs, "; "))
	}
	return nil
}

// maxShown bounds how much of a refused value an error message quotes.
const maxShown = 64

// shown quotes v for an error message, cut to maxShown bytes: a hostile value is never echoed whole.
func shown(v string) string {
	if len(v) <= maxShown {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%q... (%d bytes)", v[:maxShown], len(v))
}

// ValidateObjectName refuses an object name that Kubernetes could not hold for gr: services are
// DNS-1035 labels, namespaces DNS-1123 labels, every other resource (built-in or custom) a DNS-1123
// subdomain, as the API server validates them.
func ValidateObjectName(gr schema.GroupResource, name string) error {
	check, maxLen := validation.IsDNS1123Subdomain, validation.DNS1123SubdomainMaxLength
	switch {
	case gr.Group == "" && gr.Resource == "namespaces":
		check, maxLen = validation.IsDNS1123Label, validation.DNS1123LabelMaxLength
	case gr.Group == "" && gr.Resource == "services":
		check, maxLen = validation.IsDNS1035Label, validation.DNS1035LabelMaxLength
	}
	// The length first: the pattern is not run over a long hostile value.
	if len(name) > maxLen {
		return fmt.Errorf("%s is not a valid name for %s: longer than %d characters", shown(name), gr, maxLen)
	}
	if errs := check(name); len(errs) > 0 {
		return fmt.Errorf("%s is not a valid name for %s: %s", shown(name), gr, strings.Join(errs, "; "))
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
