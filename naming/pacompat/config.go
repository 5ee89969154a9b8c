// Package pacompat reads prometheus-adapter configuration files unchanged and reproduces
// prometheus-adapter's discovery (which metric names exist for which resources) and its
// query rendering (the PromQL sent for one request), so an existing prometheus-adapter
// config serves the same metrics with the same queries. It does no I/O.
//
// The output differs from prometheus-adapter's only where request values are escaped;
// Metric.Build lists each place.
package pacompat

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	yaml "go.yaml.in/yaml/v2"
)

// Config is a prometheus-adapter configuration file, field for field.
type Config struct {
	// Rules are the custom.metrics.k8s.io discovery rules (`rules`).
	Rules []Rule `yaml:"rules"`
	// ResourceRules configure metrics.k8s.io (`resourceRules`).
	ResourceRules *ResourceRules `yaml:"resourceRules,omitempty"`
	// ExternalRules are the external.metrics.k8s.io discovery rules (`externalRules`).
	ExternalRules []Rule `yaml:"externalRules,omitempty"`
	// Warnings are things that parse but will not behave as the file suggests.
	Warnings []string `yaml:"-"`
}

// Rule is one prometheus-adapter discovery rule (config.DiscoveryRule).
type Rule struct {
	// SeriesQuery is the series selector sent to /api/v1/series to discover series.
	SeriesQuery string `yaml:"seriesQuery"`
	// SeriesFilters are extra regular expressions on the discovered series names.
	SeriesFilters []RegexFilter `yaml:"seriesFilters"`
	// Resources map Prometheus labels to Kubernetes resources.
	Resources ResourceMapping `yaml:"resources"`
	// Name turns a series name into the metric name served.
	Name NameMapping `yaml:"name"`
	// MetricsQuery is a Go template, delimited by << and >>, of the PromQL for one request.
	MetricsQuery string `yaml:"metricsQuery,omitempty"`
}

// RegexFilter keeps series whose name matches Is, or does not match IsNot; exactly one is set.
type RegexFilter struct {
	Is    string `yaml:"is,omitempty"`    // keep names matching this unanchored regular expression
	IsNot string `yaml:"isNot,omitempty"` // keep names not matching this unanchored regular expression
}

// ResourceMapping says which Prometheus labels name which Kubernetes resources.
type ResourceMapping struct {
	// Template turns a group and singular resource into a label name, e.g. kube_<<.Group>>_<<.Resource>>.
	Template string `yaml:"template,omitempty"`
	// Overrides maps a label name to a group-resource.
	Overrides map[string]GroupResource `yaml:"overrides,omitempty"`
	// Namespaced, for external rules, says whether the request's namespace becomes a matcher (default true).
	Namespaced *bool `yaml:"namespaced,omitempty"`
}

// GroupResource is a Kubernetes group and resource as written in the config (any of plural, singular, kind).
type GroupResource struct {
	Group    string `yaml:"group,omitempty"` // API group; empty for the core group
	Resource string `yaml:"resource"`        // e.g. pod, pods or Pod
}

// NameMapping turns a series name into a metric name: Matches is a regular expression, As its expansion.
type NameMapping struct {
	Matches string `yaml:"matches"` // unanchored; empty means .*
	As      string `yaml:"as"`      // $0, $1, ${name}; empty means $0 without capture groups, $1 with one
}

// ResourceRules configure prometheus-adapter's resource metrics (metrics.k8s.io).
type ResourceRules struct {
	CPU    ResourceRule   `yaml:"cpu"`    // CPU usage queries
	Memory ResourceRule   `yaml:"memory"` // memory usage queries
	Window model.Duration `yaml:"window"` // the window reported with the values
}

// ResourceRule is the CPU or memory part of ResourceRules.
type ResourceRule struct {
	ContainerQuery string          `yaml:"containerQuery"` // template of the per-container query
	NodeQuery      string          `yaml:"nodeQuery"`      // template of the per-node query
	Resources      ResourceMapping `yaml:"resources"`      // label mapping, as in a rule
	ContainerLabel string          `yaml:"containerLabel"` // the label holding the container name
}

// Section names, as they appear in the file and in errors.
const (
	SectionRules         = "rules"
	SectionExternalRules = "externalRules"
	SectionResourceRules = "resourceRules"
)

// RuleError is a problem with one field of one prometheus-adapter rule.
type RuleError struct {
	Section     string // SectionRules, SectionExternalRules or SectionResourceRules
	Index       int    // position in the section, from 0; -1 for resourceRules
	SeriesQuery string // the rule's seriesQuery, to recognise it by
	Field       string // e.g. name.matches; empty when the rule as a whole is at fault
	Err         error
}

// Error reads like: rules[3] (seriesQuery {__name__=~"^container_.*"}): name.matches: error parsing regexp: ...
func (e *RuleError) Error() string {
	var b strings.Builder
	b.WriteString(e.Section)
	if e.Index >= 0 {
		fmt.Fprintf(&b, "[%d]", e.Index)
	}
	if q := oneLine(e.SeriesQuery); q != "" {
		fmt.Fprintf(&b, " (seriesQuery %s)", q)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *RuleError) Unwrap() error { return e.Err }

// oneLine shows a possibly multi-line seriesQuery on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ruleSlot decodes one rule and keeps its error, so every bad rule is reported with its index.
type ruleSlot struct {
	rule        Rule
	seriesQuery string
	err         error
}

func (s *ruleSlot) UnmarshalYAML(unmarshal func(any) error) error {
	if err := unmarshal(&s.rule); err != nil {
		err = detach(err)
		var peek struct {
			SeriesQuery string `yaml:"seriesQuery"`
		}
		_ = unmarshal(&peek) // unknown fields are reported above; this only recovers the seriesQuery
		s.seriesQuery, s.err = peek.SeriesQuery, err
		return nil
	}
	s.seriesQuery = s.rule.SeriesQuery
	return nil
}

type resourceSlot struct {
	rules ResourceRules
	err   error
}

func (s *resourceSlot) UnmarshalYAML(unmarshal func(any) error) error {
	s.err = detach(unmarshal(&s.rules))
	return nil
}

// detach copies a yaml.TypeError's messages: the decoder reuses the slice they are in.
func detach(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return &yaml.TypeError{Errors: slices.Clone(te.Errors)}
	}
	return err
}

// rawConfig is Config with per-rule error capture; prometheus-adapter decodes with yaml.v2 UnmarshalStrict.
type rawConfig struct {
	Rules         []ruleSlot    `yaml:"rules"`
	ResourceRules *resourceSlot `yaml:"resourceRules,omitempty"`
	ExternalRules []ruleSlot    `yaml:"externalRules,omitempty"`
}

// helmKey tells keys of the Helm chart's values.yaml `rules:` block, which users paste by mistake, and
// what the rendered config.yaml calls them ("" when nothing).
func helmKey(key string) (configKey string, isHelm bool) {
	switch key {
	case "custom":
		return SectionRules, true
	case "external":
		return SectionExternalRules, true
	case "resource":
		return SectionResourceRules, true
	case "default", "existing":
		return "", true
	}
	return "", false
}

// Parse decodes a prometheus-adapter config exactly as prometheus-adapter does (strict YAML:
// unknown and duplicate fields are errors). Every rule that does not decode is reported, by section and index.
func Parse(data []byte) (*Config, error) {
	var raw rawConfig
	if err := yaml.UnmarshalStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("prometheus-adapter config: %w", cleanYAMLError(err, data))
	}
	cfg := &Config{}
	var errs []error
	collect := func(section string, slots []ruleSlot) []Rule {
		if slots == nil {
			return nil
		}
		out := make([]Rule, len(slots))
		for i, s := range slots {
			if s.err != nil {
				errs = append(errs, &RuleError{Section: section, Index: i, SeriesQuery: s.seriesQuery, Err: cleanYAMLError(s.err, nil)})
				continue
			}
			out[i] = s.rule
		}
		return out
	}
	cfg.Rules = collect(SectionRules, raw.Rules)
	cfg.ExternalRules = collect(SectionExternalRules, raw.ExternalRules)
	if raw.ResourceRules != nil {
		if raw.ResourceRules.err != nil {
			errs = append(errs, &RuleError{Section: SectionResourceRules, Index: -1, Err: cleanYAMLError(raw.ResourceRules.err, nil)})
		} else {
			rr := raw.ResourceRules.rules
			cfg.ResourceRules = &rr
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(cfg.Rules) == 0 && len(cfg.ExternalRules) == 0 && cfg.ResourceRules == nil {
		return nil, errors.New("prometheus-adapter config: no rules, externalRules or resourceRules")
	}
	return cfg, nil
}

// Detect reports whether data looks like a prometheus-adapter config rather than a native one:
// a native file has a top-level `metrics:`; a prometheus-adapter file has `rules`, `externalRules` or `resourceRules`.
func Detect(data []byte) bool {
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		return false
	}
	if _, native := top["metrics"]; native {
		return false
	}
	for _, k := range []string{SectionRules, SectionExternalRules, SectionResourceRules} {
		if _, ok := top[k]; ok {
			return true
		}
	}
	return false
}

var (
	unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)
	intoTypeRE     = regexp.MustCompile(`into (\[\])?(?:\*?[a-z]+\.)?(\w+)`)
)

// typeName says in config terms what one of yaml.v2's Go type names means.
func typeName(goName string) string {
	switch goName {
	case "ruleSlot":
		return "rules"
	case "Rule":
		return "rule"
	case "RegexFilter":
		return "filter: {is: ...} or {isNot: ...}"
	case "ResourceMapping":
		return "resources mapping"
	case "GroupResource":
		return "group-resource: {group: ..., resource: ...}"
	case "NameMapping":
		return "name mapping: {matches: ..., as: ...}"
	case "resourceSlot", "ResourceRules":
		return "resourceRules mapping"
	case "ResourceRule":
		return "resourceRules entry"
	case "rawConfig":
		return "prometheus-adapter config"
	}
	return goName
}

// cleanYAMLError rewrites yaml.v2's Go type names into config terms and adds hints for common mix-ups.
func cleanYAMLError(err error, data []byte) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if sub := unknownFieldRE.FindStringSubmatch(m); sub != nil {
			hint := ""
			if data != nil { // top level
				switch want, helm := helmKey(sub[1]); {
				case sub[1] == "metrics":
					hint = " (a top-level metrics: is promql-adapter's native format, not prometheus-adapter's)"
				case helm && want != "":
					hint = fmt.Sprintf(" (%s is a key of the Helm chart's values; the rendered config.yaml calls it %s)", sub[1], want)
				case helm:
					hint = " (that is a key of the Helm chart's values, not of prometheus-adapter's config.yaml)"
				}
			}
			m = unknownFieldRE.ReplaceAllString(m, fmt.Sprintf("unknown field %q", sub[1])) + hint
		}
		m = intoTypeRE.ReplaceAllStringFunc(m, func(s string) string {
			sub := intoTypeRE.FindStringSubmatch(s)
			name := typeName(sub[2])
			if sub[1] != "" {
				return "into a list of " + name
			}
			return "into a " + name
		})
		if data != nil && strings.Contains(m, "into a list of rules") && strings.Contains(m, "!!map") {
			m += " (rules: must be a list; a mapping with default/custom/external is the Helm chart's values, not the config it renders)"
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}
