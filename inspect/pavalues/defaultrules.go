package pavalues

// defaultRules serve the metric names prometheus-adapter's chart serves with rules.default: true,
// written for this project in prometheus-adapter's format (served by naming/pacompat):
//
//   - container_<x>_seconds_total → <x> (rate over 5m), for pods and namespaces;
//   - container_<x>_total (not _seconds_total) → <x> (rate over 5m), for pods and namespaces;
//   - container_<x> (not ending in _total) → <x>, for pods and namespaces;
//
// each from the series with a namespace and a pod, the cgroup of the pause container ("POD") left out; and, from
// every other series with a namespace label, for each resource its labels name (namespace, pod,
// service, ...):
//
//   - <x> (not ending in _total) → <x>;
//   - <x>_total (not containing _seconds_total) → <x> (rate over 5m);
//   - <x>_seconds_total → <x> (rate over 5m).
func defaultRules() []any {
	const (
		containers = `{__name__=~"container_.*",namespace!="",pod!="",container!="POD"}`
		others     = `{__name__!~"container_.*",namespace!=""}`
		rate       = `sum by (<<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>}[5m]))`
		rateCont   = `sum by (<<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[5m]))`
		gaugeCont  = `sum by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>,container!="POD"})`
		gauge      = `sum by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})`
	)
	podAndNamespace := map[string]any{"overrides": map[string]any{
		"namespace": map[string]any{"resource": "namespace"},
		"pod":       map[string]any{"resource": "pod"},
	}}
	everyResource := map[string]any{"template": "<<.Resource>>"}
	rule := func(series string, isNot string, resources map[string]any, matches, query string) any {
		r := map[string]any{
			"seriesQuery":  series,
			"resources":    resources,
			"name":         map[string]any{"matches": matches, "as": "${1}"},
			"metricsQuery": query,
		}
		if isNot != "" {
			r["seriesFilters"] = []any{map[string]any{"isNot": isNot}}
		}
		return r
	}
	return []any{
		rule(containers, "", podAndNamespace, `^container_(.+)_seconds_total$`, rateCont),
		rule(containers, `_seconds_total$`, podAndNamespace, `^container_(.+)_total$`, rateCont),
		rule(containers, `_total$`, podAndNamespace, `^container_(.+)$`, gaugeCont),
		rule(others, `_total$`, everyResource, `^(.+)$`, gauge),
		rule(others, `_seconds_total`, everyResource, `^(.+)_total$`, rate),
		rule(others, "", everyResource, `^(.+)_seconds_total$`, rate),
	}
}
