package pacompat

import (
	"fmt"
	"net/http"

	"github.com/promql-adapter/promql-adapter/naming"
)

// Unusable is a rule of rules or externalRules that Compile refuses. prometheus-adapter starts on
// most such files and fails only the requests for that rule; CompileLenient does the same.
type Unusable struct {
	Section     string // SectionRules, SectionExternalRules or SectionResourceRules
	Index       int    // position in the section, from 0; -1 for resourceRules
	Field       string // resourceRules only: the part at fault, e.g. cpu.containerQuery
	SeriesQuery string // the rule's seriesQuery, to recognise it by
	Err         error  // every problem of the rule (RuleErrors, joined)
	// Discovers is true when only the metricsQuery is at fault: the rule's series still name metrics,
	// listed as in prometheus-adapter (so a later rule of the same name still wins), whose requests fail
	// with Err. False when its discovery is at fault too: it names no metric.
	Discovers bool
}

// Rule is the rule's place in the file, e.g. "rules[2]" or "resourceRules.cpu.nodeQuery".
func (u Unusable) Rule() string {
	if u.Section == SectionResourceRules {
		return u.Section + "." + u.Field
	}
	return fmt.Sprintf("%s[%d]", u.Section, u.Index)
}

// String is one line for logs: what the rule still does, then why it is unusable (naming the rule).
func (u Unusable) String() string {
	what := "its metrics are listed and their requests fail"
	switch {
	case u.Section == SectionResourceRules:
		what = "the metrics.k8s.io requests that need it fail"
	case !u.Discovers:
		what = "it serves no metric"
	}
	return fmt.Sprintf("unusable, %s: %s", what, oneLine(u.Err.Error()))
}

// CompileLenient is Compile as prometheus-adapter serves a config: rules and externalRules that
// Compile refuses are reported in Rules.Unusable instead of refusing the file, and every other rule
// is served. A rule whose metricsQuery alone is at fault keeps its discovery; requests for its metrics
// fail with a naming.RuleFault carrying prometheus-adapter's status class. resourceRules are left to
// LoadLenient.
func CompileLenient(cfg *Config, resolver naming.Resolver) (*Rules, error) {
	return compile(cfg, resolver, true)
}

// LoadLenient is Load with CompileLenient; UnusableRules lists what it left unusable.
func LoadLenient(data []byte, resolver naming.Resolver) (*naming.Rules, []string, error) {
	cfg, err := Parse(data)
	if err != nil {
		return nil, nil, err
	}
	rules, err := CompileLenient(cfg, resolver)
	if err != nil {
		return nil, nil, err
	}
	out := &naming.Rules{Series: seriesRules{rules}}
	if cfg.ResourceRules != nil {
		var unusable []Unusable
		if out.Resource, unusable, err = compileResourceRules(cfg.ResourceRules, resolver, true); err != nil {
			return nil, nil, err
		}
		rules.Unusable = append(rules.Unusable, unusable...)
	}
	return out, rules.Warnings, nil
}

// UnusableRules lists the unusable rules of a rule set LoadLenient returned; nil for any other.
func UnusableRules(rules *naming.Rules) []Unusable {
	if rules == nil {
		return nil
	}
	if s, ok := rules.Series.(seriesRules); ok {
		return s.r.Unusable
	}
	return nil
}

// ref names the rule in request errors, e.g. `rules[2] (seriesQuery {__name__="x"})`.
func (ru *rule) ref() string {
	s := fmt.Sprintf("%s[%d]", ru.section, ru.index)
	if q := oneLine(ru.seriesQuery); q != "" {
		s += " (seriesQuery " + q + ")"
	}
	return s
}

// renderFailed is what prometheus-adapter answers when a metricsQuery renders nothing or cannot be
// executed: the metric is not found (404) for custom metrics, an internal error (500) for external ones.
func (ru *rule) renderFailed() int {
	if ru.external {
		return http.StatusInternalServerError
	}
	return http.StatusNotFound
}

// unusableFault is the error for a request to a metric of a rule without a usable template: an
// empty metricsQuery fails as prometheus-adapter fails it (its template renders an empty query), one
// that is not a template fails as an internal error (prometheus-adapter does not start on it).
func (ru *rule) unusableFault() error {
	code := http.StatusInternalServerError
	if ru.emptyQuery {
		code = ru.renderFailed()
	}
	return &naming.RuleFault{Code: code, Err: fmt.Errorf("unusable rule: %w", ru.unusable)}
}
