package pacompat

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/promql-adapter/promql-adapter/naming"
)

var (
	labelMatchersRE = regexp.MustCompile(`\s*,?\s*<<\s*\.LabelMatchers\s*>>\s*,?`)
	seriesRE        = regexp.MustCompile(`<<\s*\.Series\s*>>`)
	groupByRE       = regexp.MustCompile(`<<\s*\.GroupBy\s*>>`)
	groupRefRE      = regexp.MustCompile(`\$\{?([0-9]+)\}?`)
	resourceOnlyRE  = regexp.MustCompile(`^\s*<<\s*\.Resource\s*>>\s*$`)
)

// requiredResourceLabels are the labels a series selector requires (label!="" or =~".+") that name a resource.
func requiredResourceLabels(q string, resolver naming.Resolver) (map[string]GroupResource, error) {
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(q)
	if err != nil {
		return nil, err
	}
	out := map[string]GroupResource{}
	for _, m := range ms {
		required := (m.Type == labels.MatchNotEqual && m.Value == "") || (m.Type == labels.MatchRegexp && m.Value == ".+")
		if !required || m.Name == model.MetricNameLabel {
			continue
		}
		if res, err := resolver.Resolve(m.Name); err == nil {
			out[m.Name] = GroupResource{Group: res.GroupResource.Group, Resource: res.GroupResource.Resource}
		}
	}
	return out, nil
}

// Convert turns a prometheus-adapter config into the native rule format, one native discover
// rule per (rule, resource label). A rule that cannot be expressed simply is kept as a comment
// that says why; resolver names the resources the overrides point at.
func Convert(cfg *Config, resolver naming.Resolver) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Converted from a prometheus-adapter config by `promql-adapter convert`.\n")
	b.WriteString("# Each rule discovers its metrics from the same series; the request's matchers are injected\n")
	b.WriteString("# into the query instead of <<.LabelMatchers>>.\n")
	if cfg.ResourceRules != nil {
		b.WriteString("# resourceRules (metrics.k8s.io) are not served by promql-adapter and were left out.\n")
	}
	b.WriteString("metrics:\n")
	for i, r := range cfg.Rules {
		convertRule(&b, fmt.Sprintf("rules[%d]", i), r, false, resolver)
	}
	for i, r := range cfg.ExternalRules {
		convertRule(&b, fmt.Sprintf("externalRules[%d]", i), r, true, resolver)
	}
	return []byte(b.String()), nil
}

func convertRule(b *strings.Builder, where string, r Rule, external bool, resolver naming.Resolver) {
	fmt.Fprintf(b, "\n# %s: seriesQuery %s\n", where, r.SeriesQuery)
	skip := func(why string) {
		fmt.Fprintf(b, "# NOT CONVERTED: %s. Keep serving this rule from the prometheus-adapter config, or write it by hand.\n", why)
	}
	overrides := r.Resources.Overrides
	if t := r.Resources.Template; t != "" {
		if !resourceOnlyRE.MatchString(t) {
			skip("resources.template " + t + " maps labels by a naming pattern; list the labels under resources.overrides")
			return
		}
		// <<.Resource>>: a label named after a resource maps to it. The series this rule lists carry
		// the labels its seriesQuery requires; those become the resources.
		req, err := requiredResourceLabels(r.SeriesQuery, resolver)
		if err != nil || len(req) == 0 {
			skip("resources.template <<.Resource>> with a seriesQuery that requires no resource label")
			return
		}
		overrides = map[string]GroupResource{}
		for l, gr := range r.Resources.Overrides {
			overrides[l] = gr
		}
		var names []string
		for l, gr := range req {
			if _, ok := overrides[l]; !ok {
				overrides[l] = gr
				names = append(names, l)
			}
		}
		sort.Strings(names)
		fmt.Fprintf(b, "# resources.template <<.Resource>>: the resource labels the seriesQuery requires (%s); series with further resource labels yield no further metrics here.\n", strings.Join(names, ", "))
	}
	series, err := seriesSelector(r.SeriesQuery, r.SeriesFilters)
	if err != nil {
		skip(err.Error())
		return
	}
	matches, as, err := nameMapping(r.Name)
	if err != nil {
		skip(err.Error())
		return
	}
	nsLabel := ""
	type target struct {
		label string
		res   naming.Resource
	}
	var targets []target
	labelsSorted := make([]string, 0, len(overrides))
	for l := range overrides {
		labelsSorted = append(labelsSorted, l)
	}
	sort.Strings(labelsSorted)
	for _, l := range labelsSorted {
		gr := overrides[l]
		name := gr.Resource
		if gr.Group != "" {
			name += "." + gr.Group
		}
		res, err := resolver.Resolve(name)
		if err != nil {
			skip(fmt.Sprintf("resources.overrides.%s: %v", l, err))
			return
		}
		if res.GroupResource.Resource == "namespaces" && res.GroupResource.Group == "" {
			nsLabel = l
		}
		targets = append(targets, target{l, res})
	}
	if external {
		q, why := convertQuery(r.MetricsQuery, "")
		if why != "" {
			skip(why)
			return
		}
		var rb strings.Builder
		rb.WriteString("- resource: external\n")
		if r.Resources.Namespaced != nil && !*r.Resources.Namespaced {
			rb.WriteString("  namespaced: false\n")
		} else if nsLabel != "" && nsLabel != naming.NamespaceLabel {
			fmt.Fprintf(&rb, "  labels: {namespace: %s}\n", nsLabel)
		}
		writeDiscover(&rb, series, matches, as, q)
		emit(b, rb.String(), resolver, skip)
		return
	}
	if len(targets) == 0 {
		skip("resources maps no label to a resource")
		return
	}
	for _, t := range targets {
		q, why := convertQuery(r.MetricsQuery, t.label)
		if why != "" {
			skip(why)
			return
		}
		var rb strings.Builder
		fmt.Fprintf(&rb, "- resource: %s\n", t.res.GroupResource)
		var lbls []string
		if t.res.Namespaced && nsLabel != "" && nsLabel != naming.NamespaceLabel {
			lbls = append(lbls, "namespace: "+nsLabel)
		}
		if t.label != t.res.Singular {
			lbls = append(lbls, "name: "+t.label)
		}
		if len(lbls) > 0 {
			fmt.Fprintf(&rb, "  labels: {%s}\n", strings.Join(lbls, ", "))
		}
		writeDiscover(&rb, series, matches, as, q)
		emit(b, rb.String(), resolver, skip)
	}
}

// emit writes one native rule after checking that it compiles on its own; else it says why not.
func emit(b *strings.Builder, rule string, resolver naming.Resolver, skip func(string)) {
	cfg, err := naming.ParseConfig([]byte("metrics:\n" + rule))
	if err == nil {
		_, err = naming.Compile(cfg, resolver)
	}
	if err != nil {
		skip(strings.ReplaceAll(strings.TrimPrefix(err.Error(), "rule 0: "), "\n", " "))
		return
	}
	b.WriteString(rule)
}

func writeDiscover(b *strings.Builder, series, matches, as, query string) {
	b.WriteString("  discover:\n")
	fmt.Fprintf(b, "    series: %s\n", quote(series))
	if matches != "" {
		fmt.Fprintf(b, "    matches: %s\n", quote(matches))
	}
	if as != "" {
		fmt.Fprintf(b, "    as: %s\n", quote(as))
	}
	fmt.Fprintf(b, "  query: %s\n", quote(query))
}

// seriesSelector is the seriesQuery with seriesFilters as extra __name__ matchers (prometheus-adapter's
// filters are unanchored, Prometheus's regex matchers anchored).
func seriesSelector(q string, filters []RegexFilter) (string, error) {
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(q)
	if err != nil {
		return "", fmt.Errorf("seriesQuery: %w", err)
	}
	for _, f := range filters {
		switch {
		case f.Is != "":
			ms = append(ms, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, ".*(?:"+f.Is+").*"))
		case f.IsNot != "":
			ms = append(ms, labels.MustNewMatcher(labels.MatchNotRegexp, model.MetricNameLabel, ".*(?:"+f.IsNot+").*"))
		}
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ",") + "}", nil
}

// nameMapping turns prometheus-adapter's unanchored name.matches/as into anchored ones.
func nameMapping(n NameMapping) (matches, as string, err error) {
	m := n.Matches
	if m == "" {
		if n.As == "" || n.As == "$0" || n.As == "${0}" {
			return "", "", nil // the series name itself
		}
		m = "^(?:.*)$"
	}
	re, err := regexp.Compile(m)
	if err != nil {
		return "", "", fmt.Errorf("name.matches: %w", err)
	}
	as = n.As
	if as == "" {
		as = "$0"
		if re.NumSubexp() > 0 {
			as = "$1"
		}
	}
	if strings.HasPrefix(m, "^") && strings.HasSuffix(m, "$") && !strings.HasSuffix(m, `\$`) {
		m = strings.TrimSuffix(strings.TrimPrefix(m, "^"), "$")
		if as == "$0" || as == "${0}" {
			return m, "", nil
		}
		return m, as, nil
	}
	// Only the matched text is named: capture it, and shift the numbered groups by one.
	as = groupRefRE.ReplaceAllStringFunc(as, func(s string) string {
		var n int
		fmt.Sscanf(strings.Trim(s, "${}"), "%d", &n)
		return fmt.Sprintf("${%d}", n+1)
	})
	return ".*?(" + m + ").*", as, nil
}

// convertQuery turns a metricsQuery template into a native query, or says why it cannot.
func convertQuery(tmpl, nameLabel string) (string, string) {
	q := seriesRE.ReplaceAllString(tmpl, naming.SeriesPlaceholder)
	q = labelMatchersRE.ReplaceAllStringFunc(q, func(s string) string {
		if strings.HasPrefix(strings.TrimSpace(s), ",") && strings.HasSuffix(strings.TrimSpace(s), ",") {
			return ","
		}
		return ""
	})
	q = groupByRE.ReplaceAllString(q, nameLabel)
	if strings.Contains(q, "<<") {
		return "", "metricsQuery uses template features beyond .Series, .LabelMatchers and .GroupBy (" + tmpl + ")"
	}
	if _, err := parser.NewParser(parser.Options{}).ParseExpr(q); err != nil {
		return "", fmt.Sprintf("the converted query %q does not parse: %v", q, err)
	}
	return q, ""
}

// quote writes s as a single-quoted YAML scalar.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
