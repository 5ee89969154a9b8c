package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// API names for --apis.
const (
	APICustom   = "custom"   // custom.metrics.k8s.io
	APIExternal = "external" // external.metrics.k8s.io
	APIResource = "resource" // metrics.k8s.io
)

// servedAPIs says which API groups the process installs (and so lists in discovery).
type servedAPIs struct {
	custom, external, resource bool
}

func (a servedAPIs) String() string {
	var out []string
	for _, x := range []struct {
		on   bool
		name string
	}{{a.custom, APICustom}, {a.external, APIExternal}, {a.resource, APIResource}} {
		if x.on {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// validateAPIs checks --apis without the rule file.
func validateAPIs(apis []string) error {
	if len(apis) == 0 {
		return errors.New("--apis is empty: name at least one of custom, external, resource")
	}
	for _, a := range apis {
		switch a {
		case APICustom, APIExternal, APIResource:
		default:
			return fmt.Errorf("--apis %q: want a list of custom, external, resource", a)
		}
	}
	return nil
}

// resolveAPIs turns --apis into the served set. Unset, it is custom and external, plus resource when the
// rule file has resource rules (as prometheus-adapter serves metrics.k8s.io only with resourceRules).
// Asking for resource without resource rules, or for resource without a cluster to watch, is an error.
func resolveAPIs(apis []string, hasResourceRules, hasCluster bool) (servedAPIs, error) {
	if apis == nil {
		return servedAPIs{custom: true, external: true, resource: hasResourceRules && hasCluster}, nil
	}
	s := servedAPIs{
		custom:   slices.Contains(apis, APICustom),
		external: slices.Contains(apis, APIExternal),
		resource: slices.Contains(apis, APIResource),
	}
	if s.resource && !hasResourceRules {
		return s, errors.New("--apis includes resource, but the rule file has no resource rules (resources: in the native format, resourceRules: in prometheus-adapter's)")
	}
	if s.resource && !hasCluster {
		return s, errors.New("--apis includes resource, which needs the cluster's pods and nodes: give --lister-kubeconfig or run in a cluster")
	}
	return s, nil
}
