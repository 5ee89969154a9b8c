package naming

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Selection is what one API request selects, before it becomes label matchers.
type Selection struct {
	// Namespace of the described objects, or of the external metric's request; empty for cluster scope.
	Namespace string
	// Names of the described objects; nil selects every object (the query is then filtered by namespace only).
	Names []string
	// Selector is the request's metric label selector (metricLabelSelector, or the external labelSelector).
	Selector k8slabels.Selector
}

// Matchers turns a selection into the label matchers injected into the metric's query.
func (m *Metric) Matchers(sel Selection) ([]*labels.Matcher, error) {
	for _, v := range append([]string{sel.Namespace}, sel.Names...) {
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%q is not valid UTF-8", v)
		}
	}
	var out []*labels.Matcher
	if m.NSLabel != "" && sel.Namespace != "" {
		out = append(out, &labels.Matcher{Type: labels.MatchEqual, Name: m.NSLabel, Value: sel.Namespace})
	}
	if sel.Names != nil && m.NameLabel != "" {
		nm, err := namesMatcher(m.NameLabel, sel.Names)
		if err != nil {
			return nil, err
		}
		out = append(out, nm)
	}
	sm, err := SelectorMatchers(sel.Selector)
	if err != nil {
		return nil, err
	}
	return append(out, sm...), nil
}

// Build returns the PromQL for one request: the rule's query with the selection's matchers
// injected into its vector selectors. Values are never pasted into query text.
func (m *Metric) Build(sel Selection) (string, error) {
	if m.render != nil {
		return m.render(sel)
	}
	ms, err := m.Matchers(sel)
	if err != nil {
		return "", err
	}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(m.query)
	if err != nil {
		return "", fmt.Errorf("metric %q: stored query does not parse: %w", m.Name, err)
	}
	Inject(expr, ms, m.inject)
	return expr.String(), nil
}

// Inject appends matchers to every vector selector of expr, or only to those named in only.
// Existing matchers stay, so the result selects a subset of what the query selected.
func Inject(expr parser.Expr, matchers []*labels.Matcher, only []string) {
	if len(matchers) == 0 {
		return
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok || (len(only) > 0 && !slices.Contains(only, vs.Name)) {
			return nil
		}
		for _, lm := range matchers {
			// A fresh copy per selector: the AST must not share matchers.
			c, err := labels.NewMatcher(lm.Type, lm.Name, lm.Value)
			if err != nil {
				continue // validated when built; unreachable
			}
			vs.LabelMatchers = append(vs.LabelMatchers, c)
		}
		return nil
	})
}

// namesMatcher selects objects by name: = for one, =~ of escaped alternatives for several.
func namesMatcher(label string, names []string) (*labels.Matcher, error) {
	if len(names) == 1 {
		return labels.NewMatcher(labels.MatchEqual, label, names[0])
	}
	return labels.NewMatcher(labels.MatchRegexp, label, alternatives(names))
}

// alternatives is a regular expression matching exactly the given values, sorted, metacharacters escaped.
func alternatives(values []string) string {
	s := slices.Clone(values)
	slices.Sort(s)
	s = slices.Compact(s)
	for i := range s {
		s[i] = regexp.QuoteMeta(s[i])
	}
	return strings.Join(s, "|")
}

// SelectorMatchers turns a Kubernetes label selector into Prometheus label matchers.
// It supports =, ==, !=, in, notin, exists and !exists; > and < are refused.
func SelectorMatchers(sel k8slabels.Selector) ([]*labels.Matcher, error) {
	if sel == nil {
		return nil, nil
	}
	reqs, selectable := sel.Requirements()
	if !selectable {
		return nil, fmt.Errorf("selector %q selects nothing", sel.String())
	}
	out := make([]*labels.Matcher, 0, len(reqs))
	for _, r := range reqs {
		name := r.Key()
		if !IsLabelName(name) {
			return nil, fmt.Errorf("selector key %q is not a valid Prometheus label name (letters, digits and _ only)", name)
		}
		if name == "__name__" {
			return nil, fmt.Errorf("selector key %q is refused: the rule's query fixes the metric name", name)
		}
		vals := r.ValuesUnsorted()
		var t labels.MatchType
		val := ""
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals:
			t, val = labels.MatchEqual, vals[0]
		case selection.NotEquals:
			t, val = labels.MatchNotEqual, vals[0]
		case selection.In:
			t, val = labels.MatchRegexp, alternatives(vals)
		case selection.NotIn:
			t, val = labels.MatchNotRegexp, alternatives(vals)
		case selection.Exists:
			t = labels.MatchNotEqual
		case selection.DoesNotExist:
			t = labels.MatchEqual
		default:
			return nil, fmt.Errorf("selector operator %q on %q is not supported (use =, !=, in, notin, exists, !)", r.Operator(), name)
		}
		m, err := labels.NewMatcher(t, name, val)
		if err != nil {
			return nil, fmt.Errorf("selector on %q: %w", name, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// IsLabelName accepts classic Prometheus label names: letters, digits and _, not starting with a digit.
func IsLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return true
}

// IsMetricName accepts classic Prometheus metric names: letters, digits, _ and :, not starting with a digit.
func IsMetricName(s string) bool {
	return s != "" && IsLabelName(strings.ReplaceAll(s, ":", "_"))
}
