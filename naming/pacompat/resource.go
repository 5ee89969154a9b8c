package pacompat

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"text/template"
	"time"

	"github.com/promql-adapter/promql-adapter/naming"
)

// CompileResourceRules turns resourceRules into the queries metrics.k8s.io serves. Each query is
// rendered as prometheus-adapter renders it for the same request: .LabelMatchers is the namespace
// matcher (pods only) then the object names (name="a" for one, name=~"a|b" for several, in request
// order); .GroupBy is the pod label then containerLabel for containerQuery, the node label for
// nodeQuery. Values are escaped as in Metric.Build. Every error names its field.
func CompileResourceRules(rr *ResourceRules, resolver naming.Resolver) (*naming.ResourceRules, error) {
	out, _, err := compileResourceRules(rr, resolver, false)
	return out, err
}

// compileResourceRules is CompileResourceRules; lenient, an unusable part (a quantity's resources or
// containerLabel, its containerQuery, its nodeQuery) is returned in Unusable instead of refusing the
// rules, and the queries that need it fail with a 500 naming the field: prometheus-adapter starts on
// most such configs and fails only those requests.
func compileResourceRules(rr *ResourceRules, resolver naming.Resolver, lenient bool) (*naming.ResourceRules, []Unusable, error) {
	if rr == nil || resolver == nil {
		return nil, nil, errors.New("resourceRules: CompileResourceRules needs the rules and a resolver")
	}
	out := &naming.ResourceRules{Window: time.Duration(rr.Window), PerNamespace: true, Format: SectionResourceRules}
	var errs []error
	var unusable []Unusable
	fail := func(field string, err error) error {
		re := &RuleError{Section: SectionResourceRules, Index: -1, Field: field, Err: err}
		errs = append(errs, re)
		unusable = append(unusable, Unusable{Section: SectionResourceRules, Index: -1, Field: field, Err: re})
		return &naming.RuleFault{Code: http.StatusInternalServerError, Err: fmt.Errorf("unusable rule: %w", re)}
	}
	pods, errP := resolver.Resolve("pods")
	nodes, errN := resolver.Resolve("nodes")
	if err := errors.Join(errP, errN); err != nil {
		return nil, nil, fmt.Errorf("resourceRules: %w", err)
	}
	for _, part := range []struct {
		name string
		r    *ResourceRule
		dst  **naming.ResourceQuery
	}{{"cpu", &rr.CPU, &out.CPU}, {"memory", &rr.Memory, &out.Memory}} {
		f := func(s string) string { return part.name + "." + s }
		q := naming.ResourceQuery{ContainerLabel: part.r.ContainerLabel}
		podsQ, nodesQ, podsErr, nodesErr := compileResourceQueries(&q, part.r, pods, nodes, resolver)
		for _, e := range []*fieldError{podsErr, nodesErr} {
			if e != nil && e.fault == nil { // resources and containerLabel: one error for both
				e.fault = fail(f(e.field), e.err)
			}
		}
		if podsErr != nil {
			podsQ = func([]string, []string) (string, error) { return "", podsErr.fault }
		} else if sample, err := podsQ([]string{"ns-a", "ns-b"}, []string{"a", "b"}); err == nil && naming.KeepsLabel(sample, q.NSLabel) == nil {
			// .GroupBy carries the namespace label over several namespaces; a template that groups by
			// fixed labels without it is asked one namespace at a time, as prometheus-adapter asks.
			q.MultiNamespace = true
		}
		if nodesErr != nil {
			nodesQ = func([]string) (string, error) { return "", nodesErr.fault }
		}
		*part.dst = naming.NewRenderedResourceQuery(q, podsQ, nodesQ)
	}
	if len(errs) > 0 && !lenient {
		return nil, nil, errors.Join(errs...)
	}
	return out, unusable, nil
}

// fieldError is what is wrong with one field of a resourceRules quantity, and the error its requests fail with.
type fieldError struct {
	field string
	err   error
	fault error
}

// compileResourceQueries compiles one quantity's container and node queries into q's labels and two render
// functions. A problem with resources or containerLabel is returned as the same field for both.
func compileResourceQueries(q *naming.ResourceQuery, r *ResourceRule, pods, nodes naming.Resource, resolver naming.Resolver) (
	podsQ func([]string, []string) (string, error), nodesQ func([]string) (string, error), podsErr, nodesErr *fieldError) {
	both := func(field string, err error) (func([]string, []string) (string, error), func([]string) (string, error), *fieldError, *fieldError) {
		e := &fieldError{field: field, err: err}
		return nil, nil, e, e
	}
	conv, _, err := newConverter(r.Resources, resolver)
	if err != nil {
		return both("resources", err)
	}
	var lerrs []error
	for _, l := range []struct {
		dst *string
		res naming.Resource
	}{{&q.NSLabel, conv.nsRes}, {&q.PodLabel, pods}, {&q.NodeLabel, nodes}} {
		lbl, err := conv.labelFor(l.res)
		if err != nil {
			lerrs = append(lerrs, err)
			continue
		}
		*l.dst = lbl
	}
	if len(lerrs) > 0 {
		return both("resources", errors.Join(lerrs...))
	}
	if !naming.IsLabelName(q.ContainerLabel) {
		return both("containerLabel", fmt.Errorf("required: the label holding the container name (usually container), not %q", q.ContainerLabel))
	}
	if ct, err := resourceTemplate(r.ContainerQuery); err != nil {
		podsErr = &fieldError{field: "containerQuery", err: err}
	} else {
		podsQ = func(nss []string, names []string) (string, error) {
			return renderResource(ct, q.NSLabel, nss, q.PodLabel, names, q.ContainerLabel)
		}
		if _, err := podsQ([]string{"ns"}, []string{"a", "b"}); err != nil {
			podsQ, podsErr = nil, &fieldError{field: "containerQuery", err: fmt.Errorf("for a sample request: %w", err)}
		}
	}
	if nt, err := resourceTemplate(r.NodeQuery); err != nil {
		nodesErr = &fieldError{field: "nodeQuery", err: err}
	} else {
		nodesQ = func(names []string) (string, error) {
			return renderResource(nt, "", nil, q.NodeLabel, names, "")
		}
		if _, err := nodesQ([]string{"a", "b"}); err != nil {
			nodesQ, nodesErr = nil, &fieldError{field: "nodeQuery", err: fmt.Errorf("for a sample request: %w", err)}
		}
	}
	return podsQ, nodesQ, podsErr, nodesErr
}

func resourceTemplate(text string) (*template.Template, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("required: a query template such as sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>}[5m]))")
	}
	return parseTemplate(text)
}

// renderResource renders one resource query: nsLabel="ns" for one namespace, then the names,
// grouped by the name label and extra. names nil renders name!="" (prometheus-adapter always names
// the objects). Several namespaces render nsLabel=~"a|b", and they or every namespace (nss empty)
// put nsLabel first in the grouping, so one query serves them all and its results say whose they are.
func renderResource(t *template.Template, nsLabel string, nss []string, nameLabel string, names []string, extra string) (string, error) {
	req := &request{values: map[string]string{}}
	switch len(nss) {
	case 0:
	case 1:
		req.add(part{nsLabel, "=", nss[0]})
	default:
		req.add(part{nsLabel, "=~", alternatives(nss)})
	}
	switch {
	case names == nil:
		req.parts = append(req.parts, part{nameLabel, "!=", ""})
	case len(names) == 0:
		return "", errors.New("no object names requested")
	case len(names) == 1:
		req.add(part{nameLabel, "=", names[0]})
	default:
		req.add(part{nameLabel, "=~", alternatives(names)})
	}
	req.groupBy = []string{nameLabel}
	if nsLabel != "" && len(nss) != 1 {
		req.groupBy = []string{nsLabel, nameLabel}
	}
	if extra != "" {
		req.groupBy = append(req.groupBy, extra)
	}
	matchers := make([]string, len(req.parts))
	for i, p := range req.parts {
		matchers[i] = p.String()
	}
	values := make(map[string]string, len(req.values))
	for k, v := range req.values {
		values[k] = stringContent(v)
	}
	q, err := render(t, queryArgs{
		LabelMatchers:     strings.Join(matchers, ","),
		LabelValuesByName: values,
		GroupBy:           strings.Join(req.groupBy, ","),
		GroupBySlice:      req.groupBy,
	})
	if err != nil {
		return "", err
	}
	if _, err := promqlParser().ParseExpr(q); err != nil {
		return "", fmt.Errorf("renders invalid PromQL: %w (rendered: %s)", err, oneLine(q))
	}
	return q, nil
}
