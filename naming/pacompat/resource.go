package pacompat

import (
	"errors"
	"fmt"
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
	if rr == nil || resolver == nil {
		return nil, errors.New("resourceRules: CompileResourceRules needs the rules and a resolver")
	}
	out := &naming.ResourceRules{Window: time.Duration(rr.Window), PerNamespace: true, Format: SectionResourceRules}
	var errs []error
	fail := func(field string, err error) {
		errs = append(errs, &RuleError{Section: SectionResourceRules, Index: -1, Field: field, Err: err})
	}
	pods, errP := resolver.Resolve("pods")
	nodes, errN := resolver.Resolve("nodes")
	if err := errors.Join(errP, errN); err != nil {
		return nil, fmt.Errorf("resourceRules: %w", err)
	}
	for _, part := range []struct {
		name string
		r    *ResourceRule
		dst  **naming.ResourceQuery
	}{{"cpu", &rr.CPU, &out.CPU}, {"memory", &rr.Memory, &out.Memory}} {
		f := func(s string) string { return part.name + "." + s }
		conv, _, err := newConverter(part.r.Resources, resolver)
		if err != nil {
			fail(f("resources"), err)
			continue
		}
		q := naming.ResourceQuery{ContainerLabel: part.r.ContainerLabel}
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
			fail(f("resources"), errors.Join(lerrs...))
			continue
		}
		if !naming.IsLabelName(q.ContainerLabel) {
			fail(f("containerLabel"), fmt.Errorf("required: the label holding the container name (usually container), not %q", q.ContainerLabel))
			continue
		}
		ct, err := resourceTemplate(part.r.ContainerQuery)
		if err != nil {
			fail(f("containerQuery"), err)
			continue
		}
		nt, err := resourceTemplate(part.r.NodeQuery)
		if err != nil {
			fail(f("nodeQuery"), err)
			continue
		}
		podsQ := func(ns string, names []string) (string, error) {
			return renderResource(ct, q.NSLabel, ns, q.PodLabel, names, q.ContainerLabel)
		}
		nodesQ := func(names []string) (string, error) {
			return renderResource(nt, "", "", q.NodeLabel, names, "")
		}
		if _, err := podsQ("ns", []string{"a", "b"}); err != nil {
			fail(f("containerQuery"), fmt.Errorf("for a sample request: %w", err))
			continue
		}
		if _, err := nodesQ([]string{"a", "b"}); err != nil {
			fail(f("nodeQuery"), fmt.Errorf("for a sample request: %w", err))
			continue
		}
		*part.dst = naming.NewRenderedResourceQuery(q, podsQ, nodesQ)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func resourceTemplate(text string) (*template.Template, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("required: a query template such as sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>}[5m]))")
	}
	return parseTemplate(text)
}

// renderResource renders one resource query: nsLabel="ns" when ns is set, then the names, grouped by
// the name label and extra. names nil renders name!="" (prometheus-adapter always names the objects).
func renderResource(t *template.Template, nsLabel, ns, nameLabel string, names []string, extra string) (string, error) {
	req := &request{values: map[string]string{}}
	if ns != "" {
		req.add(part{nsLabel, "=", ns})
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
