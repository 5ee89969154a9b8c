package loadsim

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// ParseTarget parses "namespace/deployment/service/capacity/selector", where selector is "key=value[,key=value...]" and its keys may contain "/".
func ParseTarget(s string) (Target, error) {
	parts := strings.SplitN(s, "/", 5)
	if len(parts) != 5 {
		return Target{}, fmt.Errorf("loadsim: target %q: want namespace/deployment/service/capacity/selector", s)
	}
	for i, name := range []string{"namespace", "deployment", "service", "capacity", "selector"} {
		if strings.TrimSpace(parts[i]) == "" {
			return Target{}, fmt.Errorf("loadsim: target %q: empty %s", s, name)
		}
	}
	capacity, err := strconv.ParseFloat(parts[3], 64)
	if err != nil {
		return Target{}, fmt.Errorf("loadsim: target %q: capacity: %w", s, err)
	}
	sel, err := ParseSelector(parts[4])
	if err != nil {
		return Target{}, fmt.Errorf("loadsim: target %q: %w", s, err)
	}
	t := Target{Namespace: parts[0], Deployment: parts[1], Service: parts[2], Capacity: capacity, MatchLabels: sel}
	if _, err := newTarget(t); err != nil {
		return Target{}, err
	}
	return t, nil
}

// ParseSelector parses matchLabels written as "key=value[,key=value...]"; a key given twice is an error.
func ParseSelector(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, term := range strings.Split(s, ",") {
		set, err := labels.ConvertSelectorToLabelsMap(term)
		if err != nil {
			return nil, fmt.Errorf("selector %q: %w", s, err)
		}
		if len(set) == 0 {
			return nil, fmt.Errorf("selector %q: empty term", s)
		}
		for k, v := range set {
			if _, dup := out[k]; dup {
				return nil, fmt.Errorf("selector %q: key %q given twice", s, k)
			}
			out[k] = v
		}
	}
	return out, nil
}

// ParseLoad parses "namespace/deployment=rps" into its parts; rps must be a finite number >= 0.
func ParseLoad(s string) (namespace, deployment string, rps float64, err error) {
	name, num, ok := strings.Cut(s, "=")
	ns, dep, ok2 := strings.Cut(name, "/")
	if !ok || !ok2 || ns == "" || dep == "" || strings.Contains(dep, "/") {
		return "", "", 0, fmt.Errorf("loadsim: load %q: want namespace/deployment=rps", s)
	}
	rps, err = strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil {
		return "", "", 0, fmt.Errorf("loadsim: load %q: %w", s, err)
	}
	if err := checkValue(rps); err != nil {
		return "", "", 0, fmt.Errorf("loadsim: load %q: %w", s, err)
	}
	return ns, dep, rps, nil
}
