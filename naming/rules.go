// Package naming is the rule model of promql-adapter: it parses and validates
// rule files, maps Kubernetes resources to Prometheus labels and back, and
// builds the PromQL for one API request. It does no I/O.
package naming

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// External is the Rule.Resource value of a metric served by external.metrics.k8s.io.
const External = "external"

// SeriesPlaceholder is the metric name in a discovery rule's query that each discovered series name replaces.
const SeriesPlaceholder = "__series__"

// Config is a rule file in the native format.
type Config struct {
	// Metrics are the rules, each exposing one metric or, with Discover, one per discovered series.
	Metrics []Rule `json:"metrics"`
	// Resources, when set, serve metrics.k8s.io (CPU and memory of pods and nodes).
	Resources *ResourceConfig `json:"resources,omitempty"`
	// Backends declares Prometheus-compatible backends besides the default one (the --prometheus-* flags).
	Backends []BackendConfig `json:"backends,omitempty"`
}

// Rule exposes one metric from one PromQL query.
type Rule struct {
	// Name is the metric name the HPA asks for; with Discover it is left empty.
	Name string `json:"name,omitempty"`
	// Resource is what the metric describes: pods, services, deployments.apps, nodes, namespaces, ... or external.
	Resource string `json:"resource"`
	// Query is plain PromQL; the request's label matchers are injected into its vector selectors.
	Query string `json:"query"`
	// Labels overrides which Prometheus labels hold the object's namespace and name.
	Labels LabelMapping `json:"labels,omitempty"`
	// Inject limits matcher injection to the vector selectors of these metric names; empty means all.
	Inject []string `json:"inject,omitempty"`
	// Namespaced, for external metrics only, says whether the request's namespace becomes a matcher (default true).
	Namespaced *bool `json:"namespaced,omitempty"`
	// Window is the sample window reported to the HPA (a Prometheus duration); by default the query's longest range.
	Window string `json:"window,omitempty"`
	// Fallback is a quantity served for every requested object while the query fails.
	Fallback string `json:"fallback,omitempty"`
	// Freshness bounds the age of an answer shared with other requests (a Prometheus duration, at
	// most MaxFreshness; 0s never shares); by default the adapter's --coalesce-freshness.
	Freshness string `json:"freshness,omitempty"`
	// Discover turns the rule into one metric per series name that matches.
	Discover *Discovery `json:"discover,omitempty"`
	// Backend names the declared backend the rule's queries (and discovery) read; empty: the default.
	Backend string `json:"backend,omitempty"`
}

// LabelMapping names the Prometheus labels that identify an object.
type LabelMapping struct {
	// Namespace is the label holding the object's namespace (default "namespace").
	Namespace string `json:"namespace,omitempty"`
	// Name is the label holding the object's name (default the resource's singular name, e.g. "pod").
	Name string `json:"name,omitempty"`
}

// Discovery expands one rule into a metric per matching series name.
type Discovery struct {
	// Series is a Prometheus series selector, e.g. {__name__=~"myapp_.+_total",namespace!=""}.
	Series string `json:"series"`
	// Matches is a regular expression on the series name; series names that do not match are ignored.
	Matches string `json:"matches,omitempty"`
	// As is the metric name built from Matches ($1, ${name}); by default the series name itself.
	As string `json:"as,omitempty"`
}

// RuleError is a problem with one field of one rule.
type RuleError struct {
	Index int    // position of the rule in the file, from 0
	Name  string // the rule's metric name, if it has one
	Field string // the field at fault
	Err   error
}

func (e *RuleError) Error() string {
	who := fmt.Sprintf("rule %d", e.Index)
	if e.Name != "" {
		who += fmt.Sprintf(" (%s)", e.Name)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %v", who, e.Err)
	}
	return fmt.Sprintf("%s: field %s: %v", who, e.Field, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// ParseConfig decodes a native rule file (YAML or JSON). Unknown fields are errors that name the rule.
func ParseConfig(data []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("rule file is not valid YAML: %w", err)
	}
	var top struct {
		Metrics   []json.RawMessage `json:"metrics"`
		Resources json.RawMessage   `json:"resources"`
		Backends  json.RawMessage   `json:"backends"`
	}
	if err := decodeStrict(js, &top); err != nil {
		return nil, fmt.Errorf("rule file: %w", err)
	}
	if len(top.Metrics) == 0 && top.Resources == nil {
		return nil, errors.New("rule file: no rules under \"metrics\" (nor a \"resources\" section)")
	}
	cfg := &Config{Metrics: make([]Rule, len(top.Metrics))}
	if top.Resources != nil {
		cfg.Resources = &ResourceConfig{}
		if err := decodeStrict(top.Resources, cfg.Resources); err != nil {
			return nil, fmt.Errorf("rule file: resources: %w", err)
		}
	}
	if top.Backends != nil {
		if err := decodeStrict(top.Backends, &cfg.Backends); err != nil {
			return nil, fmt.Errorf("rule file: backends: %w", err)
		}
	}
	var errs []error
	for i, raw := range top.Metrics {
		if err := decodeStrict(raw, &cfg.Metrics[i]); err != nil {
			var peek struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(raw, &peek)
			errs = append(errs, &RuleError{Index: i, Name: peek.Name, Err: err})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// encoding/json says `json: unknown field "x"`; keep it, minus the package prefix.
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
