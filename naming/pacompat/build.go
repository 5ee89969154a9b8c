package pacompat

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/prometheus/prometheus/promql/parser"
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
//   - .LabelValuesByName values are escaped for the PromQL string form the template puts them in
//     (prometheus-adapter pastes them raw, so a quote could end the string): escapes in double- and
//     single-quoted strings; as they are in backtick raw strings, which cannot hold a backtick, so a
//     value with one is refused; outside a string only plain names pass. Several values are the
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
		if key == "__name__" {
			return fmt.Errorf("selector key %q is refused: the rule's query fixes the metric name", key)
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
	args := queryArgs{
		Series:        m.Series,
		LabelMatchers: strings.Join(matchers, ","),
		GroupBy:       strings.Join(req.groupBy, ","),
		GroupBySlice:  req.groupBy,
	}
	values, err := m.escapedValues(req.values, args)
	if err != nil {
		return "", err
	}
	args.LabelValuesByName = values
	q, err := render(m.rule.query, args)
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

// Where a template can put a .LabelValuesByName value: inside a PromQL string of one of the three
// quote characters, in a # comment, or anywhere else (formBare).
const (
	formDouble  = '"'
	formSingle  = '\''
	formRaw     = '`'
	formComment = '#'
	formBare    = 0
)

// valueMarker stands for the value of the i-th label while finding where the template puts values.
func valueMarker(i int) string { return "zq9pacompatvalue" + strconv.Itoa(i) + "x" }

// escapedValues escapes each .LabelValuesByName value for every place the template puts it. It
// renders the template once with a marker per value and lexes the result as PromQL, so a value in a
// double- or single-quoted string is escaped for it (quotes as \x22 and \x27, backslashes and control
// characters as Go escapes them), a value in a backtick raw string, which has no escapes, is passed
// as it is and refused when it holds a backtick, a value in a comment is refused when it holds a line
// break, and a value outside any string must be a plain name. A template that branches on the values
// may take another branch with the markers; the places found are then a superset, so still safe.
func (m *Metric) escapedValues(raw map[string]string, args queryArgs) (map[string]string, error) {
	out := make(map[string]string, len(raw))
	if len(raw) == 0 || !m.rule.usesValues {
		for k, v := range raw {
			out[k] = stringContent(v)
		}
		return out, nil
	}
	keys := slices.Sorted(maps.Keys(raw))
	marked := make(map[string]string, len(keys))
	for i, k := range keys {
		marked[k] = valueMarker(i)
	}
	args.LabelValuesByName = marked
	probe, err := render(m.rule.query, args)
	if err != nil {
		return nil, err
	}
	forms, err := valueForms(probe, len(keys))
	if err != nil {
		return nil, fmt.Errorf("metricsQuery renders invalid PromQL for this request: %w (rendered: %s)", err, oneLine(probe))
	}
	for i, k := range keys {
		v, err := escapeFor(raw[k], forms[i])
		if err != nil {
			return nil, fmt.Errorf("value of label %q for .LabelValuesByName: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// valueForms lexes a query rendered with n markers and returns, per marker, the places it occurs.
func valueForms(q string, n int) ([]map[rune]bool, error) {
	forms := make([]map[rune]bool, n)
	seen := make([]int, n)
	for i := range forms {
		forms[i] = map[rune]bool{}
	}
	l := parser.Lex(q)
	for {
		var it parser.Item
		l.NextItem(&it)
		if it.Typ == parser.EOF {
			break
		}
		if it.Typ == parser.ERROR {
			return nil, errors.New(it.Val)
		}
		form := rune(formBare)
		switch it.Typ {
		case parser.STRING:
			form = rune(it.Val[0])
		case parser.COMMENT:
			form = formComment
		}
		for i := range forms {
			if c := strings.Count(it.Val, valueMarker(i)); c > 0 {
				forms[i][form] = true
				seen[i] += c
			}
		}
	}
	for i := range forms {
		if seen[i] < strings.Count(q, valueMarker(i)) {
			forms[i][formBare] = true // split across tokens: treat as outside any string
		}
	}
	return forms, nil
}

// escapeFor is v written so that it is the same value in each of the given places.
func escapeFor(v string, forms map[rune]bool) (string, error) {
	quoted := forms[formDouble] || forms[formSingle]
	out := stringContent(v)
	if forms[formRaw] || forms[formBare] || (forms[formComment] && !quoted) {
		if quoted && out != v {
			return "", fmt.Errorf("%q is used both in a quoted string and raw; it must hold no quote, backslash or control character", v)
		}
		out = v
	}
	switch {
	case forms[formRaw] && strings.ContainsRune(v, '`'):
		return "", fmt.Errorf("%q holds a backtick, which a PromQL raw string (`...`) cannot hold", v)
	case forms[formBare] && !naming.IsMetricName(v):
		return "", fmt.Errorf("%q is used outside a string in the metricsQuery, so it must be a plain name (letters, digits, _ and :)", v)
	case forms[formComment] && strings.ContainsAny(out, "\r\n"):
		return "", fmt.Errorf("%q holds a line break and is used in a comment", v)
	}
	return out, nil
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
