package naming

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// ResourceConfig is the native `resources:` section: the PromQL behind metrics.k8s.io
// (kubectl top, HPA type: Resource), one query per quantity and object kind.
type ResourceConfig struct {
	// CPU gives per-container and per-node CPU usage in cores.
	CPU ResourceQueries `json:"cpu"`
	// Memory gives per-container and per-node memory working set in bytes.
	Memory ResourceQueries `json:"memory"`
	// Window is the window reported with every value (a Prometheus duration); by default the
	// longest range in the cpu containerQuery.
	Window string `json:"window,omitempty"`
}

// ResourceQueries are the queries of one quantity.
type ResourceQueries struct {
	// ContainerQuery returns one sample per container, keyed by namespace, pod and container labels.
	ContainerQuery string `json:"containerQuery"`
	// NodeQuery returns one sample per node, keyed by the node label; empty serves no NodeMetrics.
	NodeQuery string `json:"nodeQuery,omitempty"`
	// Labels overrides the labels the results are keyed by, where they differ from the conventional ones.
	Labels ResourceLabels `json:"labels,omitempty"`
}

// ResourceLabels name the Prometheus labels that identify containers and nodes.
type ResourceLabels struct {
	Namespace string `json:"namespace,omitempty"` // default "namespace"
	Pod       string `json:"pod,omitempty"`       // default "pod"
	Container string `json:"container,omitempty"` // default "container"
	Node      string `json:"node,omitempty"`      // default "node"
}

// ResourceRules build the PromQL of metrics.k8s.io for one request. Both rule formats compile to it.
type ResourceRules struct {
	CPU, Memory *ResourceQuery
	// Window is reported with every PodMetrics and NodeMetrics.
	Window time.Duration
	// PerNamespace asks for one query per namespace naming every selected pod, as prometheus-adapter does;
	// otherwise one query serves the request and, past a size, selects by namespace rather than by name.
	PerNamespace bool
	// Format names where the rules come from in messages: "resources" or "resourceRules".
	Format string
}

// ResourceQuery is one quantity's compiled queries and the labels its results carry.
type ResourceQuery struct {
	NSLabel, PodLabel, ContainerLabel, NodeLabel string
	// MultiNamespace reports that a query over several namespaces (PodsIn) keeps NSLabel in its
	// results, so one query can serve pods of several namespaces.
	MultiNamespace bool

	container, node string                                                    // native: parsed and re-printed PromQL
	pods            func(namespaces []string, names []string) (string, error) // rendered formats
	nodes           func(names []string) (string, error)
}

// NewRenderedResourceQuery returns a ResourceQuery whose text another rule format renders (prometheus-adapter templates).
// pods gets the namespaces (none: every namespace) and the pod names (nil: every pod); nodes may be nil when the
// format serves no node query.
func NewRenderedResourceQuery(q ResourceQuery, pods func([]string, []string) (string, error), nodes func([]string) (string, error)) *ResourceQuery {
	q.pods, q.nodes = pods, nodes
	return &q
}

// HasNodes reports whether the quantity has a node query.
func (q *ResourceQuery) HasNodes() bool { return q.nodes != nil || q.node != "" }

// Pods returns the per-container query for the pods named in namespace. namespace "" is every
// namespace; names nil is every pod (the caller keeps the pods it wants).
func (q *ResourceQuery) Pods(namespace string, names []string) (string, error) {
	var nss []string
	if namespace != "" {
		nss = []string{namespace}
	}
	return q.PodsIn(nss, names)
}

// PodsIn returns the per-container query for the pods named in the given namespaces (none: every
// namespace); names nil is every pod of them. Over several namespaces, results carry NSLabel only
// when MultiNamespace.
func (q *ResourceQuery) PodsIn(namespaces []string, names []string) (string, error) {
	if q.pods != nil {
		return q.pods(namespaces, names)
	}
	var ms []*labels.Matcher
	if len(namespaces) > 0 {
		nm, err := namesMatcher(q.NSLabel, namespaces)
		if err != nil {
			return "", err
		}
		ms = append(ms, nm)
	}
	return inject(q.container, q.PodLabel, names, ms)
}

// Nodes returns the per-node query for the named nodes; names nil is every node.
func (q *ResourceQuery) Nodes(names []string) (string, error) {
	if q.nodes != nil {
		return q.nodes(names)
	}
	if q.node == "" {
		return "", errors.New("no nodeQuery is configured")
	}
	return inject(q.node, q.NodeLabel, names, nil)
}

func inject(query, nameLabel string, names []string, ms []*labels.Matcher) (string, error) {
	if names != nil {
		if len(names) == 0 {
			return "", errors.New("no object names requested")
		}
		nm, err := namesMatcher(nameLabel, names)
		if err != nil {
			return "", err
		}
		ms = append(ms, nm)
	}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		return "", fmt.Errorf("stored query does not parse: %w", err)
	}
	Inject(expr, ms, nil)
	return expr.String(), nil
}

// ResourceError is a problem with one field of the native resources section.
type ResourceError struct {
	Field string // e.g. cpu.containerQuery
	Err   error
}

func (e *ResourceError) Error() string { return fmt.Sprintf("resources: field %s: %v", e.Field, e.Err) }

// Unwrap returns the underlying error.
func (e *ResourceError) Unwrap() error { return e.Err }

// CompileResources validates the native resources section. Every error names its field; all are reported at once.
func CompileResources(c *ResourceConfig) (*ResourceRules, error) {
	out := &ResourceRules{Format: "resources"}
	var errs []error
	fail := func(field string, err error) { errs = append(errs, &ResourceError{Field: field, Err: err}) }
	var cpuContainer parser.Expr
	for _, part := range []struct {
		name string
		in   *ResourceQueries
		dst  **ResourceQuery
	}{{"cpu", &c.CPU, &out.CPU}, {"memory", &c.Memory, &out.Memory}} {
		l := part.in.Labels
		q := &ResourceQuery{
			NSLabel: or(l.Namespace, NamespaceLabel), PodLabel: or(l.Pod, "pod"),
			ContainerLabel: or(l.Container, "container"), NodeLabel: or(l.Node, "node"),
		}
		ok := true
		for _, lbl := range []string{q.NSLabel, q.PodLabel, q.ContainerLabel, q.NodeLabel} {
			if !IsLabelName(lbl) {
				fail(part.name+".labels", fmt.Errorf("%q is not a valid Prometheus label name", lbl))
				ok = false
			}
		}
		if part.in.ContainerQuery == "" {
			fail(part.name+".containerQuery", errors.New("required: PromQL giving one sample per container, by (namespace, pod, container)"))
			ok = false
		} else if expr, err := parseQuery(part.in.ContainerQuery); err != nil {
			fail(part.name+".containerQuery", err)
			ok = false
		} else {
			for _, lbl := range []string{q.NSLabel, q.PodLabel, q.ContainerLabel} {
				if err := checkKeeps(expr, lbl); err != nil {
					fail(part.name+".containerQuery", err)
					ok = false
					break
				}
			}
			q.container = expr.String()
			q.MultiNamespace = true // it keeps NSLabel (checked above)
			if part.name == "cpu" {
				cpuContainer = expr
			}
		}
		if part.in.NodeQuery != "" {
			if expr, err := parseQuery(part.in.NodeQuery); err != nil {
				fail(part.name+".nodeQuery", err)
				ok = false
			} else if err := checkKeeps(expr, q.NodeLabel); err != nil {
				fail(part.name+".nodeQuery", err)
				ok = false
			} else {
				q.node = expr.String()
			}
		}
		if ok {
			*part.dst = q
		}
	}
	if (c.CPU.NodeQuery == "") != (c.Memory.NodeQuery == "") {
		fail("nodeQuery", errors.New("set for one of cpu and memory only; NodeMetrics need both (or neither, to serve pods only)"))
	}
	if cpuContainer != nil || c.Window != "" {
		w, err := window(c.Window, cpuContainer)
		switch {
		case err != nil:
			fail("window", err)
		case w == nil:
			fail("window", errors.New("required: the cpu containerQuery has no range to take it from (e.g. window: 5m for a rate over 5m)"))
		default:
			out.Window = time.Duration(*w) * time.Second
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// KeepsLabel reports, as an error, a query whose outermost aggregation drops label; an unparsable
// query is an error too.
func KeepsLabel(query, label string) error {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		return fmt.Errorf("query does not parse: %w", err)
	}
	return checkKeeps(expr, label)
}
