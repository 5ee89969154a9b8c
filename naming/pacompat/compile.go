package pacompat

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/promql-adapter/promql-adapter/naming"
)

// namespaces is the resource the request's namespace is matched as.
const namespaces = "namespaces"

// alwaysClusterScoped reports the group-resources prometheus-adapter treats as cluster-scoped whatever
// the series says: namespaces, nodes and persistentvolumes. Every other one it flags namespaced.
func alwaysClusterScoped(gr schema.GroupResource) bool {
	return gr.Group == "" && (gr.Resource == namespaces || gr.Resource == "nodes" || gr.Resource == "persistentvolumes")
}

// Rules is a validated prometheus-adapter config, ready to expand discovered series into metrics.
type Rules struct {
	// Warnings are the config's warnings plus those found while compiling: things prometheus-adapter
	// accepts that will not do what they seem to.
	Warnings []string

	// Unusable are the rules Compile refuses; CompileLenient serves the others and keeps these
	// to report them, and to fail the requests for their metrics as prometheus-adapter does.
	Unusable []Unusable

	custom   []*rule
	external []*rule
}

// rule is one compiled discovery rule.
type rule struct {
	section     string
	index       int
	external    bool
	seriesQuery string
	filters     []filter // seriesFilters, then name.matches as an `is` filter
	nameRE      *regexp.Regexp
	nameAs      string
	conv        *converter
	namespaced  bool // external rules: the request's namespace becomes a matcher
	query       *template.Template
	usesValues  bool  // metricsQuery reads .LabelValuesByName
	unusable    error // why the rule is unusable (CompileLenient); its discovery still names metrics
	emptyQuery  bool  // no metricsQuery: prometheus-adapter renders an empty query
}

type filter struct {
	re       *regexp.Regexp
	positive bool
}

func (f filter) matches(s string) bool { return f.re.MatchString(s) == f.positive }

// converter maps labels to resources and back, as prometheus-adapter's resourceConverter does.
type converter struct {
	overrides map[string]naming.Resource      // label -> resource
	labelOf   map[schema.GroupResource]string // resource -> label, from overrides
	tmpl      *template.Template              // resources.template, or nil
	extract   *regexp.Regexp                  // the template turned into a pattern on label names
	groupIdx  int                             // submatch of the group in extract, or -1
	resIdx    int                             // submatch of the resource in extract
	nsRes     naming.Resource                 // the namespaces resource, for the namespace label
	resolver  naming.Resolver
}

// SeriesQueries are the distinct seriesQuery selectors to list series with (/api/v1/series match[]),
// in rule order; prometheus-adapter, too, sends each distinct selector once.
func (r *Rules) SeriesQueries() []string {
	var out []string
	for _, ru := range slices.Concat(r.custom, r.external) {
		if !slices.Contains(out, ru.seriesQuery) {
			out = append(out, ru.seriesQuery)
		}
	}
	return out
}

// Compile validates cfg as prometheus-adapter does at start-up (regular expressions, templates,
// resources, which the resolver must know) and more: a metricsQuery must render valid PromQL for a
// sample request, and a seriesQuery must be a valid series selector. All errors are reported at once.
func Compile(cfg *Config, resolver naming.Resolver) (*Rules, error) {
	return compile(cfg, resolver, false)
}

func compile(cfg *Config, resolver naming.Resolver, lenient bool) (*Rules, error) {
	if cfg == nil || resolver == nil {
		return nil, errors.New("prometheus-adapter config: Compile needs a config and a resolver")
	}
	out := &Rules{Warnings: slices.Clone(cfg.Warnings)}
	var errs []error
	for _, sec := range []struct {
		name     string
		rules    []Rule
		external bool
		dst      *[]*rule
	}{
		{SectionRules, cfg.Rules, false, &out.custom},
		{SectionExternalRules, cfg.ExternalRules, true, &out.external},
	} {
		for i := range sec.rules {
			ru, warns, err := compileRule(sec.name, i, &sec.rules[i], sec.external, resolver)
			out.Warnings = append(out.Warnings, warns...)
			if err != nil {
				out.Unusable = append(out.Unusable, Unusable{Section: sec.name, Index: i, SeriesQuery: sec.rules[i].SeriesQuery, Err: err, Discovers: ru != nil})
				if ru == nil {
					continue
				}
				ru.unusable = err
			}
			*sec.dst = append(*sec.dst, ru)
		}
	}
	if rr := cfg.ResourceRules; rr != nil && !lenient {
		for _, part := range []struct {
			name string
			r    *ResourceRule
		}{{"cpu", &rr.CPU}, {"memory", &rr.Memory}} {
			for _, q := range [][2]string{{"containerQuery", part.r.ContainerQuery}, {"nodeQuery", part.r.NodeQuery}} {
				if _, err := parseTemplate(q[1]); err != nil {
					errs = append(errs, &RuleError{Section: SectionResourceRules, Index: -1, Field: part.name + "." + q[0], Err: err})
				}
			}
			if _, _, err := newConverter(part.r.Resources, resolver); err != nil {
				errs = append(errs, &RuleError{Section: SectionResourceRules, Index: -1, Field: part.name + ".resources", Err: err})
			}
		}
	}
	if len(errs) > 0 || (!lenient && len(out.Unusable) > 0) {
		for _, u := range slices.Backward(out.Unusable) {
			errs = slices.Insert(errs, 0, u.Err)
		}
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// compileRule compiles one rule. When only its metricsQuery is at fault, it returns the rule
// with the error: its discovery still names metrics, which a lenient load serves as failing.
func compileRule(section string, i int, r *Rule, external bool, resolver naming.Resolver) (*rule, []string, error) {
	var warns []string
	warn := func(format string, args ...any) {
		who := fmt.Sprintf("%s[%d]", section, i)
		if q := oneLine(r.SeriesQuery); q != "" {
			who += " (seriesQuery " + q + ")"
		}
		warns = append(warns, who+": "+fmt.Sprintf(format, args...))
	}
	var errs []error
	fail := func(field string, err error) {
		errs = append(errs, &RuleError{Section: section, Index: i, SeriesQuery: r.SeriesQuery, Field: field, Err: err})
	}
	ru := &rule{section: section, index: i, external: external, seriesQuery: r.SeriesQuery, namespaced: true}

	// Discovery. prometheus-adapter fails every rule's discovery when one seriesQuery is rejected.
	if strings.TrimSpace(r.SeriesQuery) == "" {
		fail("seriesQuery", errors.New("required: a series selector such as {__name__=~\"^http_.*_total$\",namespace!=\"\"}"))
	} else if ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(r.SeriesQuery); err != nil {
		fail("seriesQuery", fmt.Errorf("not a valid series selector: %w", err))
	} else if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches("") }) {
		fail("seriesQuery", errors.New("not a valid series selector: Prometheus needs at least one matcher that does not match the empty string"))
	}
	for j, f := range r.SeriesFilters {
		field := fmt.Sprintf("seriesFilters[%d]", j)
		switch {
		case f.Is != "" && f.IsNot != "":
			fail(field, fmt.Errorf("cannot have both an `is` (%q) and `isNot` (%q) expression in a single filter", f.Is, f.IsNot))
			continue
		case f.Is == "" && f.IsNot == "":
			fail(field, errors.New("must have either an `is` or `isNot` expression in a filter"))
			continue
		}
		raw, positive, sub := f.Is, true, ".is"
		if f.IsNot != "" {
			raw, positive, sub = f.IsNot, false, ".isNot"
		}
		re, err := regexp.Compile(raw)
		if err != nil {
			fail(field+sub, err)
			continue
		}
		ru.filters = append(ru.filters, filter{re: re, positive: positive})
	}

	// Naming: name.matches is unanchored; it filters series names and its first match is expanded by name.as.
	matches := r.Name.Matches
	if matches == "" {
		matches = ".*"
	}
	if re, err := regexp.Compile(matches); err != nil {
		fail("name.matches", err)
	} else {
		ru.nameRE = re
		if r.Name.Matches != "" {
			ru.filters = append(ru.filters, filter{re: re, positive: true})
		}
		ru.nameAs = r.Name.As
		if ru.nameAs == "" {
			switch re.NumSubexp() {
			case 0:
				ru.nameAs = "$0"
			case 1:
				ru.nameAs = "$1"
			default:
				fail("name.as", fmt.Errorf("required: name.matches %q has %d capture groups, so there is no default", r.Name.Matches, re.NumSubexp()))
			}
		}
	}

	// Association.
	conv, cwarns, err := newConverter(r.Resources, resolver)
	if err != nil {
		fail("resources", err)
	}
	for _, w := range cwarns {
		warn("%s", w)
	}
	ru.conv = conv
	if r.Resources.Namespaced != nil {
		if external {
			ru.namespaced = *r.Resources.Namespaced
		} else {
			warn("resources.namespaced applies to externalRules only; prometheus-adapter ignores it here, and so do we")
		}
	}
	if conv != nil {
		_, nsErr := conv.labelFor(conv.nsRes)
		switch {
		case !external && conv.tmpl == nil && len(conv.overrides) == 0:
			warn("neither resources.template nor resources.overrides: its series map to no resource, so it serves no metric (as in prometheus-adapter)")
		case !external && nsErr != nil && conv.mapsNamespaced():
			warn("no label maps to namespaces (resources.overrides or resources.template): every request in a namespace fails, as in prometheus-adapter")
		case external && ru.namespaced && nsErr != nil:
			warn("namespaced (the default), but no label maps to namespaces (resources.overrides or resources.template): every request from a namespace fails, as in prometheus-adapter; map the namespace label or set resources.namespaced: false")
		}
	}

	// Querying.
	discovers := len(errs) == 0 && conv != nil
	switch {
	case strings.TrimSpace(r.MetricsQuery) == "":
		ru.emptyQuery = true
		fail("metricsQuery", errors.New("required: prometheus-adapter renders an empty query and fails every request"))
	default:
		t, err := parseTemplate(r.MetricsQuery)
		if err != nil {
			fail("metricsQuery", err)
			break
		}
		ru.query = t
		ru.usesValues = strings.Contains(r.MetricsQuery, "LabelValuesByName")
		if !strings.Contains(r.MetricsQuery, ".LabelMatchers") {
			warn("metricsQuery does not use <<.LabelMatchers>>: the request's namespace and objects reach the query only where it reads .LabelValuesByName; without them it reads every namespace")
		}
		if conv != nil {
			if err := ru.checkSample(); err != nil {
				fail("metricsQuery", err)
			}
		}
	}
	if len(errs) > 0 {
		if discovers {
			return ru, warns, errors.Join(errs...)
		}
		return nil, warns, errors.Join(errs...)
	}
	return ru, warns, nil
}

func parseTemplate(text string) (*template.Template, error) {
	t, err := template.New("metricsQuery").Delims("<<", ">>").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("not a valid template: %w", err)
	}
	return t, nil
}

// checkSample renders the query for a typical request and parses it, so a template that can never
// produce PromQL is found at start-up rather than on the first request.
func (ru *rule) checkSample() error {
	args := queryArgs{Series: "sample_metric", LabelValuesByName: map[string]string{}}
	if ru.external {
		args.LabelMatchers = `sample="value"`
		args.LabelValuesByName["sample"] = "value"
		args.GroupBySlice = []string{}
	} else {
		label := "pod"
		for _, l := range sortedKeys(ru.conv.overrides) {
			if naming.IsLabelName(l) && l != "namespace" {
				label = l
				break
			}
		}
		args.LabelMatchers = fmt.Sprintf(`namespace="ns",%s=~"a|b"`, label)
		args.LabelValuesByName["namespace"] = "ns"
		args.LabelValuesByName[label] = "a|b"
		args.GroupBy, args.GroupBySlice = label, []string{label}
	}
	q, err := render(ru.query, args)
	if err != nil {
		return err
	}
	if _, err := promqlParser().ParseExpr(q); err != nil {
		return fmt.Errorf("renders invalid PromQL for a sample request: %w (rendered: %s)", err, oneLine(q))
	}
	return nil
}

// promqlParser accepts everything a current Prometheus may accept, so the check rejects only real mistakes.
func promqlParser() parser.Parser {
	return parser.NewParser(parser.Options{EnableExperimentalFunctions: true, EnableBinopFillModifiers: true})
}

// newConverter builds the label↔resource mapping of one rule's resources section.
func newConverter(m ResourceMapping, resolver naming.Resolver) (*converter, []string, error) {
	var warns []string
	c := &converter{
		overrides: map[string]naming.Resource{},
		labelOf:   map[schema.GroupResource]string{},
		groupIdx:  -1,
		resolver:  resolver,
	}
	c.nsRes = naming.Resource{GroupResource: schema.GroupResource{Resource: namespaces}, Version: "v1", Kind: "Namespace", Singular: "namespace"}
	if res, err := resolver.Resolve(namespaces); err == nil && res.GroupResource == c.nsRes.GroupResource {
		c.nsRes = res
	}
	var errs []error
	if m.Template != "" {
		t, err := template.New("resources.template").Delims("<<", ">>").Parse(m.Template)
		if err != nil {
			errs = append(errs, fmt.Errorf("template: not a valid template: %w", err))
		} else if err := c.setTemplate(t); err != nil {
			errs = append(errs, fmt.Errorf("template %q: %w", m.Template, err))
		}
	}
	for _, label := range sortedKeys(m.Overrides) {
		gr := m.Overrides[label]
		res, err := resolver.Resolve(qualified(gr.Group, gr.Resource))
		if err != nil {
			errs = append(errs, fmt.Errorf("overrides.%s: %w", label, err))
			continue
		}
		if !naming.IsLabelName(label) {
			warns = append(warns, fmt.Sprintf("resources.overrides.%s: %q is not a Prometheus label name this adapter can put in a matcher; queries for %s will fail", label, label, res.GroupResource))
		}
		c.overrides[label] = res
		if prev, dup := c.labelOf[res.GroupResource]; dup {
			// prometheus-adapter keeps whichever its map iteration visits last, which varies per start.
			warns = append(warns, fmt.Sprintf("resources.overrides: labels %q and %q both map to %s; prometheus-adapter picks one at random on each start, we query by %q", prev, label, res.GroupResource, prev))
			continue
		}
		c.labelOf[res.GroupResource] = label
	}
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}
	return c, warns, nil
}

// setTemplate turns the label template into a pattern on label names, as prometheus-adapter does:
// the template is executed with capture groups for Group and Resource, its literal text unescaped.
func (c *converter) setTemplate(t *template.Template) error {
	var b bytes.Buffer
	if err := t.Execute(&b, schema.GroupResource{Group: "(?P<group>.+?)", Resource: "(?P<resource>.+?)"}); err != nil {
		return fmt.Errorf("cannot be executed: %w", err)
	}
	if b.Len() == 0 {
		return errors.New("renders an empty label")
	}
	re, err := regexp.Compile("^" + b.String() + "$")
	if err != nil {
		return fmt.Errorf("does not make a pattern on label names: %w", err)
	}
	c.resIdx = -1
	for i, n := range re.SubexpNames() {
		switch n {
		case "group":
			c.groupIdx = i
		case "resource":
			c.resIdx = i
		}
	}
	if c.resIdx < 0 {
		return errors.New("must include <<.Resource>>")
	}
	c.tmpl, c.extract = t, re
	return nil
}

// mapsNamespaced reports whether the mapping can yield a metric prometheus-adapter flags namespaced:
// with a template any label may, with overrides one naming anything but namespaces, nodes or persistentvolumes.
func (c *converter) mapsNamespaced() bool {
	if c.tmpl != nil {
		return true
	}
	for _, res := range c.overrides {
		if !alwaysClusterScoped(res.GroupResource) {
			return true
		}
	}
	return false
}

// labelFor is the label holding the names of res's objects: an override, else the template applied
// to the group (dots and dashes made underscores) and the singular resource.
func (c *converter) labelFor(res naming.Resource) (string, error) {
	if l, ok := c.labelOf[res.GroupResource]; ok {
		return l, nil
	}
	if c.tmpl == nil {
		return "", fmt.Errorf("no label maps to %s: add one to resources.overrides or set resources.template", res.GroupResource)
	}
	if res.Singular == "" {
		return "", fmt.Errorf("no singular name is known for %s", res.GroupResource)
	}
	var b bytes.Buffer
	group := strings.NewReplacer(".", "_", "-", "_").Replace(res.GroupResource.Group)
	if err := c.tmpl.Execute(&b, schema.GroupResource{Group: group, Resource: res.Singular}); err != nil {
		return "", fmt.Errorf("resources.template for %s: %w", res.GroupResource, err)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("resources.template renders an empty label for %s", res.GroupResource)
	}
	return b.String(), nil
}

// resourceOf is the resource a label names. found is false for labels no override names and the
// template does not match; unknown is true for labels the template matches but whose resource the
// resolver does not know: prometheus-adapter skips those entirely.
func (c *converter) resourceOf(label string, cache map[string]*naming.Resource) (res naming.Resource, found, unknown bool) {
	if res, ok := c.overrides[label]; ok {
		return res, true, false
	}
	if c.extract == nil {
		return naming.Resource{}, false, false
	}
	sub := c.extract.FindStringSubmatch(label)
	if sub == nil {
		return naming.Resource{}, false, false
	}
	group := ""
	if c.groupIdx >= 0 {
		group = sub[c.groupIdx]
	}
	key := qualified(group, sub[c.resIdx])
	p, seen := cache[key]
	if !seen {
		if r, err := c.resolver.Resolve(key); err == nil {
			p = &r
		}
		cache[key] = p
	}
	if p == nil {
		return naming.Resource{}, false, true
	}
	return *p, true, false
}

func qualified(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
