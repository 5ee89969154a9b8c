package pacompat

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"

	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/promql-adapter/promql-adapter/naming"
)

// queryArgs are the fields a metricsQuery template sees, with prometheus-adapter's names and types.
type queryArgs struct {
	Series            string
	LabelMatchers     string
	LabelValuesByName map[string]string
	GroupBy           string
	GroupBySlice      []string
}

// part is one label matcher of .LabelMatchers.
type part struct {
	label string
	op    string // = != =~ !~
	value string // unquoted; regular expressions already escaped
}

func (p part) String() string { return p.label + p.op + strconv.Quote(p.value) }

// request is a Selection turned into matchers; kept apart from rendering so tests can feed it any value.
type request struct {
	parts   []part
	values  map[string]string // label -> value or |-joined escaped alternatives, before template escaping
	groupBy []string
}

// Build renders the rule's metricsQuery for one request exactly as prometheus-adapter does:
// .LabelMatchers is the metric label selector's matchers (by key), then namespace="<namespace>"
// when the request has one, then, for custom metrics, the object names: name="a" for one object,
// name=~"a|b" (request order) for several; .GroupBy and .GroupBySlice are the name label (empty for
// external metrics); .Series is the series name. Values are quoted as prometheus-adapter quotes them
// (Go %q). Where the output differs, deliberately:
//   - regular-expression metacharacters are escaped in values joined into =~ and !~ matchers (several
//     names, selector in/notin, and a single-value in, which prometheus-adapter passes on as a raw regex);
//   - .LabelValuesByName values are escaped for use inside a single- or double-quoted PromQL string
//     (prometheus-adapter pastes them raw, so a quote could end the string), and several values are the
//     escaped alternatives above; a single value is not regex-escaped, as templates use it with = as
//     often as with =~, so inside =~ it is a regular expression, as in prometheus-adapter;
//   - invalid UTF-8, selector keys that are not Prometheus label names and a rendered query that does not
//     parse are errors here, where prometheus-adapter sends the query and Prometheus rejects it;
//   - sel.Names nil (every object: the caller filters results) renders name!="" where prometheus-adapter,
//     which always lists objects first, has no equivalent (an error when the template reads
//     .LabelValuesByName); an empty non-nil Names is an error, as there;
//   - a namespace for a cluster-scoped metric, or names for an external one, are errors (the API server
//     never sends them to prometheus-adapter).
//
// Build is safe for concurrent use.
func (m *Metric) Build(sel naming.Selection) (string, error) {
	if m.rule == nil {
		return "", errors.New("metric was not produced by Rules.Expand")
	}
	if m.rule.query == nil {
		return "", fmt.Errorf("metric %q: %w", m.Name, m.rule.unusableFault())
	}
	req, err := m.request(sel)
	if err != nil {
		return "", fmt.Errorf("metric %q: %w", m.Name, err)
	}
	q, err := m.render(req)
	if err != nil {
		return "", fmt.Errorf("metric %q: %w", m.Name, err)
	}
	return q, nil
}

// request turns a Selection into prometheus-adapter's matchers, in its order.
func (m *Metric) request(sel naming.Selection) (*request, error) {
	for _, v := range append([]string{sel.Namespace}, sel.Names...) {
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%q is not valid UTF-8", v)
		}
	}
	req := &request{values: map[string]string{}}
	if err := req.addSelector(sel.Selector); err != nil {
		return nil, err
	}
	if m.External {
		if sel.Names != nil {
			return nil, errors.New("an external metric describes no objects; names do not apply")
		}
		if m.Namespaced && sel.Namespace != "" {
			if m.nsErr != nil {
				return nil, m.nsErr
			}
			req.add(part{m.nsLabel, "=", sel.Namespace})
		}
		req.groupBy = []string{}
		return req, nil
	}
	if sel.Namespace != "" {
		if !m.Namespaced {
			return nil, fmt.Errorf("%s are cluster-scoped here; ask without a namespace", m.Resource.GroupResource)
		}
		if m.nsErr != nil {
			return nil, m.nsErr
		}
		req.add(part{m.nsLabel, "=", sel.Namespace})
	}
	if m.labelErr != nil {
		return nil, m.labelErr
	}
	switch {
	case sel.Names == nil:
		if m.rule.usesValues {
			return nil, errors.New("its metricsQuery reads .LabelValuesByName, so the objects must be named")
		}
		req.parts = append(req.parts, part{m.nameLabel, "!=", ""})
	case len(sel.Names) == 0:
		return nil, errors.New("no object names requested")
	case len(sel.Names) == 1:
		req.add(part{m.nameLabel, "=", sel.Names[0]})
	default:
		req.add(part{m.nameLabel, "=~", alternatives(sel.Names)})
	}
	req.groupBy = []string{m.nameLabel}
	return req, nil
}

// add appends a matcher and records its value for .LabelValuesByName: one value as it is (templates
// use it in = matchers as often as in =~), several as the escaped alternatives of the matcher. A later
// matcher on the same label replaces the value, as in prometheus-adapter.
func (r *request) add(p part) {
	r.parts = append(r.parts, p)
	r.values[p.label] = p.value
}

// addSelector converts a metric label selector as prometheus-adapter does: each requirement by key,
// values sorted; one value keeps = and !=, several become =~ / !~ of alternatives; in is =~, notin !~;
// exists is !="" and !exists ="".
func (r *request) addSelector(sel k8slabels.Selector) error {
	if sel == nil {
		return nil
	}
	reqs, selectable := sel.Requirements()
	if !selectable {
		return fmt.Errorf("selector %q selects nothing", sel.String())
	}
	for _, q := range reqs {
		key := q.Key()
		if !naming.IsLabelName(key) {
			return fmt.Errorf("selector key %q is not a Prometheus label name (letters, digits and _ only)", key)
		}
		values := q.ValuesUnsorted()
		slices.Sort(values)
		values = slices.Compact(values)
		for _, v := range values {
			if !utf8.ValidString(v) {
				return fmt.Errorf("selector value %q is not valid UTF-8", v)
			}
		}
		var p part
		op := q.Operator()
		switch {
		case op == selection.GreaterThan || op == selection.LessThan:
			return fmt.Errorf("selector operator %q on %q: operator not supported by prometheus", op, key)
		case op == selection.Exists || op == selection.DoesNotExist:
			if len(values) > 0 {
				return fmt.Errorf("selector operator %q on %q: operator does not support values", op, key)
			}
			p = part{key, "!=", ""}
			if op == selection.DoesNotExist {
				p.op = "="
			}
		case len(values) == 0:
			return fmt.Errorf("selector operator %q on %q: operator requires values", op, key)
		case (op == selection.Equals || op == selection.DoubleEquals) && len(values) == 1:
			p = part{key, "=", values[0]}
		case op == selection.NotEquals && len(values) == 1:
			p = part{key, "!=", values[0]}
		case op == selection.Equals || op == selection.DoubleEquals || op == selection.In:
			p = part{key, "=~", alternatives(values)}
		case op == selection.NotEquals || op == selection.NotIn:
			p = part{key, "!~", alternatives(values)}
		default:
			return fmt.Errorf("selector operator %q on %q: operator not supported by query builder", op, key)
		}
		r.add(p)
	}
	return nil
}

// alternatives is a regular expression matching exactly the given values, in the given order
// (prometheus-adapter's order), metacharacters escaped.
func alternatives(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = regexp.QuoteMeta(v)
	}
	return strings.Join(quoted, "|")
}

// render executes the template and checks that the result is one PromQL expression.
func (m *Metric) render(req *request) (string, error) {
	matchers := make([]string, len(req.parts))
	for i, p := range req.parts {
		matchers[i] = p.String()
	}
	values := make(map[string]string, len(req.values))
	for k, v := range req.values {
		values[k] = stringContent(v)
	}
	q, err := render(m.rule.query, queryArgs{
		Series:            m.Series,
		LabelMatchers:     strings.Join(matchers, ","),
		LabelValuesByName: values,
		GroupBy:           strings.Join(req.groupBy, ","),
		GroupBySlice:      req.groupBy,
	})
	if err != nil {
		return "", &naming.RuleFault{Code: m.rule.renderFailed(), Err: fmt.Errorf("%s: metricsQuery: %w", m.rule.ref(), err)}
	}
	if _, err := promqlParser().ParseExpr(q); err != nil {
		// prometheus-adapter sends it; Prometheus refuses it, and prometheus-adapter answers 500.
		return "", &naming.RuleFault{Code: http.StatusInternalServerError,
			Err: fmt.Errorf("%s: metricsQuery renders invalid PromQL for this request: %w (rendered: %s)", m.rule.ref(), err, oneLine(q))}
	}
	return q, nil
}

func render(t *template.Template, args queryArgs) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, args); err != nil {
		if strings.Contains(err.Error(), "can't evaluate field") {
			return "", fmt.Errorf("%w (the fields are .Series, .LabelMatchers, .LabelValuesByName, .GroupBy and .GroupBySlice)", err)
		}
		return "", err
	}
	if b.Len() == 0 {
		return "", errors.New("empty query produced by metrics query template")
	}
	return b.String(), nil
}

// stringContent escapes s for the inside of a single- or double-quoted PromQL string: backslashes
// and control characters as Go escapes them, both quote characters as \x22 and \x27.
func stringContent(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\x22`)
		case '\'':
			b.WriteString(`\x27`)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}
