package inspect

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// API groups and the versions the adapter serves.
const (
	customGroup   = "custom.metrics.k8s.io"
	externalGroup = "external.metrics.k8s.io"
)

// versions lists the versions the adapter serves of a metrics API group.
func versions(group string) []string {
	if group == customGroup {
		return []string{"v1beta1", "v1beta2"}
	}
	return []string{"v1beta1"}
}

// pathForms is the error text listing the paths Explain understands.
const pathForms = `want one of:
  /apis/custom.metrics.k8s.io/<version>/namespaces/<namespace>/<resource>/<name or *>/<metric>
  /apis/custom.metrics.k8s.io/<version>/namespaces/<namespace>/metrics/<metric>   (the namespace itself)
  /apis/custom.metrics.k8s.io/<version>/<resource>/<name or *>/<metric>            (cluster-scoped objects)
  /apis/external.metrics.k8s.io/v1beta1/namespaces/<namespace>/<metric>
with the query parameters labelSelector and metricLabelSelector (custom) or labelSelector (external)`

// request is one metrics API request, as custom-metrics-apiserver hands it to the provider.
type request struct {
	raw       string // the path as given
	api       string // group/version
	external  bool
	namespace string               // the request's namespace; empty for cluster-scoped objects
	resource  schema.GroupResource // custom: what the objects are
	name      string               // custom: the object's name, or "*"
	metric    string
	// objectSel is the custom labelSelector on objects; nil when absent.
	objectSel labels.Selector
	// metricSel is the custom metricLabelSelector, or the external labelSelector; nil when absent.
	metricSel labels.Selector
	ignored   []string // query parameters the adapter does not read
}

// parseRequest reads a metrics API path such as
// /apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/elu_utilization?labelSelector=app=web.
func parseRequest(apiPath string) (*request, error) {
	u, err := url.Parse(strings.TrimSpace(apiPath))
	if err != nil {
		return nil, fmt.Errorf("API path %q: %w", apiPath, err)
	}
	bad := func(why string) error {
		return fmt.Errorf("API path %q: %s; %s", apiPath, why, pathForms)
	}
	if !strings.HasPrefix(u.Path, "/apis/") {
		return nil, bad("it does not start with /apis/")
	}
	seg := strings.Split(strings.TrimPrefix(u.Path, "/apis/"), "/")
	if slices.Contains(seg, "") {
		return nil, bad("it has an empty path segment")
	}
	if len(seg) < 2 {
		return nil, bad("it names no API group and version")
	}
	r := &request{raw: apiPath, api: seg[0] + "/" + seg[1]}
	group, version, rest := seg[0], seg[1], seg[2:]
	switch group {
	case customGroup:
		if !slices.Contains(versions(group), version) {
			return nil, bad(fmt.Sprintf("%s is served in versions %s, not %s", group, strings.Join(versions(group), ", "), version))
		}
		switch {
		case len(rest) == 4 && rest[0] == "namespaces" && rest[2] == "metrics":
			// The namespace itself: custom-metrics-apiserver asks for the cluster-scoped
			// object "namespaces/<namespace>".
			r.resource = schema.GroupResource{Resource: "namespaces"}
			r.name, r.metric = rest[1], rest[3]
		case len(rest) == 5 && rest[0] == "namespaces":
			r.namespace = rest[1]
			r.resource = schema.ParseGroupResource(rest[2])
			r.name, r.metric = rest[3], rest[4]
		case len(rest) == 3 && rest[0] != "namespaces":
			r.resource = schema.ParseGroupResource(rest[0])
			r.name, r.metric = rest[1], rest[2]
		default:
			return nil, bad("it is not a custom metrics request")
		}
	case externalGroup:
		if !slices.Contains(versions(group), version) {
			return nil, bad(fmt.Sprintf("%s is served in version %s, not %s", group, strings.Join(versions(group), ", "), version))
		}
		if len(rest) != 3 || rest[0] != "namespaces" {
			return nil, bad("external metrics are asked for under /namespaces/<namespace>/<metric>")
		}
		r.external = true
		r.namespace, r.metric = rest[1], rest[2]
	default:
		return nil, bad(fmt.Sprintf("%q is not a metrics API group", group))
	}
	if err := r.readParams(u.Query()); err != nil {
		return nil, fmt.Errorf("API path %q: %w", apiPath, err)
	}
	return r, nil
}

// readParams parses the selectors as custom-metrics-apiserver does (labels.Parse).
func (r *request) readParams(q url.Values) error {
	parse := func(param string) (labels.Selector, error) {
		v := q.Get(param)
		if v == "" {
			return nil, nil
		}
		s, err := labels.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", param, v, err)
		}
		return s, nil
	}
	var errs []error
	var err error
	if r.external {
		r.metricSel, err = parse("labelSelector")
		errs = append(errs, err)
	} else {
		r.objectSel, err = parse("labelSelector")
		errs = append(errs, err)
		r.metricSel, err = parse("metricLabelSelector")
		errs = append(errs, err)
	}
	for k := range q {
		if k == "labelSelector" || (k == "metricLabelSelector" && !r.external) {
			continue
		}
		r.ignored = append(r.ignored, k)
	}
	slices.Sort(r.ignored)
	return errors.Join(errs...)
}
