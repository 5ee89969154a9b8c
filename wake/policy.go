// Package wake holds the pure decision logic of a scale-to-zero /
// wake-on-demand controller for HorizontalPodAutoscalers: it parses the
// opt-in annotations on an HPA into a Policy, evaluates keep-awake schedules
// and decides, from one round of activation signals, whether the HPA's target
// should be put to sleep (scaled to zero), woken up, or left alone.
//
// Nothing here performs I/O, talks to Kubernetes or keeps state between
// calls: the controller reads the signals, passes the clock in, persists the
// returned State as annotations and applies the returned Action.
//
// Decide applies these rules, in order:
//
//   - paused: None, state unchanged.
//   - no signal, or any signal with an error or a NaN value: None, and the
//     idle timer restarts (missing data is neither activity nor idleness).
//   - a signal is active when its value is strictly above the threshold; the
//     floor is the largest floor of the keep-awake windows open now.
//   - at zero replicas: activity or a floor wakes the target to
//     max(1, minReplicas, floor), never to the replicas it had before sleeping
//     (the HPA takes over from there). A target someone else put at zero is
//     woken the same way but never recorded as sleeping by us.
//   - above zero: activity or a floor keeps it awake and clears the idle
//     timer (so one active sample is enough to postpone sleep); otherwise the
//     first idle round starts the timer and the target sleeps once it has been
//     idle for IdleAfter.
//   - Requeue is the time left on the idle timer, or DefaultRequeue, and never
//     later than the next keep-awake window change.
//
// Keep-awake windows follow the wall clock of their own zone: a window whose
// start falls in a DST gap opens at the jump (02:30-03:30 on a 02:00→03:00
// day is open 03:00-03:30), and one inside a repeated hour is open during both
// occurrences of it.
package wake

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// AnnotationPrefix is the domain prefix of every annotation this package reads or writes.
const AnnotationPrefix = "scale-to-zero.promql-adapter.io/"

// Annotation key suffixes; the full key is AnnotationPrefix + Key*.
const (
	// KeyEnabled opts an HPA in when set to "true"; any other value or absence means ignore it.
	KeyEnabled = "enabled"
	// KeyIdleAfter is how long every activation signal must stay idle before sleeping (Go duration).
	KeyIdleAfter = "idle-after"
	// KeyActivationThreshold is the resource.Quantity a signal must strictly exceed to count as active.
	KeyActivationThreshold = "activation-threshold"
	// KeyActivationMetric names the signal to watch instead of the HPA's own External/Object metrics.
	KeyActivationMetric = "activation-metric"
	// KeyKeepAwake lists ";"-separated windows during which the target is kept awake.
	KeyKeepAwake = "keep-awake"
	// KeyPaused freezes the controller for this HPA when set to "true".
	KeyPaused = "paused"
	// KeySleepingReplicas is written by the controller: the replicas the target had when put to sleep.
	KeySleepingReplicas = "sleeping-replicas"
	// KeyIdleSince is written by the controller: when the signals were first seen idle (RFC3339).
	KeyIdleSince = "idle-since"
)

// Full annotation keys read from (and, for the state keys, written to) an HPA.
const (
	// AnnotationEnabled is the full key of KeyEnabled.
	AnnotationEnabled = AnnotationPrefix + KeyEnabled
	// AnnotationIdleAfter is the full key of KeyIdleAfter.
	AnnotationIdleAfter = AnnotationPrefix + KeyIdleAfter
	// AnnotationActivationThreshold is the full key of KeyActivationThreshold.
	AnnotationActivationThreshold = AnnotationPrefix + KeyActivationThreshold
	// AnnotationActivationMetric is the full key of KeyActivationMetric.
	AnnotationActivationMetric = AnnotationPrefix + KeyActivationMetric
	// AnnotationKeepAwake is the full key of KeyKeepAwake.
	AnnotationKeepAwake = AnnotationPrefix + KeyKeepAwake
	// AnnotationPaused is the full key of KeyPaused.
	AnnotationPaused = AnnotationPrefix + KeyPaused
	// AnnotationSleepingReplicas is the full key of KeySleepingReplicas.
	AnnotationSleepingReplicas = AnnotationPrefix + KeySleepingReplicas
	// AnnotationIdleSince is the full key of KeyIdleSince.
	AnnotationIdleSince = AnnotationPrefix + KeyIdleSince
)

// Defaults and limits applied by ParsePolicy and Decide.
const (
	// DefaultIdleAfter is the idle period used when AnnotationIdleAfter is absent.
	DefaultIdleAfter = 5 * time.Minute
	// MinIdleAfter is the shortest idle period AnnotationIdleAfter accepts.
	MinIdleAfter = 10 * time.Second
	// DefaultFloor is the replica floor of a keep-awake window without floor=N.
	DefaultFloor int32 = 1
	// DefaultRequeue is how soon Decide asks to be called again when nothing sooner is due.
	DefaultRequeue = time.Second
)

// Kinds of SignalRef, spelled like autoscaling/v2 MetricSourceType.
const (
	// SignalExternal is the Kind of a SignalRef naming an external metric.
	SignalExternal = "External"
	// SignalObject is the Kind of a SignalRef naming a metric describing one Kubernetes object.
	SignalObject = "Object"
)

// Policy is the validated scale-to-zero configuration of one HPA.
type Policy struct {
	IdleAfter time.Duration // idle period before sleeping; ≤0 means DefaultIdleAfter
	Threshold float64       // a signal is active when its value is strictly greater (from a resource.Quantity)
	Signal    *SignalRef    // the activation signal; nil: watch the HPA's own External and Object metrics
	KeepAwake []Window      // schedules during which the target is kept (or woken) awake
	Paused    bool          // freeze the controller for this HPA
}

// SignalRef names the one metric to watch, from AnnotationActivationMetric.
type SignalRef struct {
	Kind     string          // SignalExternal or SignalObject
	Metric   string          // metric name
	Resource string          // for SignalObject: plural resource, optionally with group, e.g. "deployments.apps"
	Name     string          // for SignalObject: name of the described object
	Selector labels.Selector // metric label selector; labels.Everything() if none
}

// String renders r back to the AnnotationActivationMetric syntax.
func (r SignalRef) String() string {
	var b strings.Builder
	switch r.Kind {
	case SignalObject:
		b.WriteString("object:" + r.Resource + "/" + r.Name + "/" + r.Metric)
	default:
		b.WriteString("external:" + r.Metric)
	}
	if r.Selector != nil && !r.Selector.Empty() {
		b.WriteString("?" + r.Selector.String())
	}
	return b.String()
}

// AnnotationError reports an annotation whose value cannot be used.
type AnnotationError struct {
	Key   string // full annotation key
	Value string // offending value (for keep-awake, the offending window)
	Err   error  // underlying cause
}

// Error renders `<key>: "<value>": <cause>`, without repeating the value if the cause already quotes it.
func (e *AnnotationError) Error() string {
	cause := "invalid value"
	if e.Err != nil {
		cause = strings.Replace(e.Err.Error(), " "+strconv.Quote(e.Value), "", 1)
	}
	return fmt.Sprintf("%s: %q: %s", e.Key, e.Value, cause)
}

// Unwrap returns the underlying cause.
func (e *AnnotationError) Unwrap() error { return e.Err }

// durationError shortens time.ParseDuration's errors to "time: invalid duration"; the value is quoted beside it already.
type durationError struct{ err error }

func (e durationError) Error() string { return "time: invalid duration" }
func (e durationError) Unwrap() error { return e.err }

func annotationErr(key, value string, err error) error {
	return &AnnotationError{Key: key, Value: value, Err: err}
}

// ParsePolicy reads an HPA's annotations; enabled is false (and err nil) unless it opted in, and err joins one *AnnotationError per bad annotation.
func ParsePolicy(annotations map[string]string) (p Policy, enabled bool, err error) {
	// Not opted in: the other annotations are none of our business, even when invalid.
	// Opted in but invalid: enabled stays true so the controller can report err on the HPA.
	if annotations[AnnotationEnabled] != "true" {
		return Policy{}, false, nil
	}
	p = Policy{IdleAfter: DefaultIdleAfter}
	var errs []error

	if v, ok := annotations[AnnotationIdleAfter]; ok {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			errs = append(errs, annotationErr(AnnotationIdleAfter, v, durationError{err}))
		case d < MinIdleAfter:
			errs = append(errs, annotationErr(AnnotationIdleAfter, v, fmt.Errorf("must be at least %s", MinIdleAfter)))
		default:
			p.IdleAfter = d
		}
	}

	if v, ok := annotations[AnnotationActivationThreshold]; ok {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, annotationErr(AnnotationActivationThreshold, v, err))
		} else {
			p.Threshold = q.AsApproximateFloat64()
		}
	}

	if v, ok := annotations[AnnotationActivationMetric]; ok {
		ref, err := ParseSignalRef(v)
		if err != nil {
			errs = append(errs, annotationErr(AnnotationActivationMetric, v, err))
		} else {
			p.Signal = &ref
		}
	}

	if v, ok := annotations[AnnotationKeepAwake]; ok {
		for _, item := range strings.Split(v, ";") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			w, err := ParseWindow(item)
			if err != nil {
				errs = append(errs, annotationErr(AnnotationKeepAwake, item, err))
				continue
			}
			p.KeepAwake = append(p.KeepAwake, w)
		}
	}

	if v, ok := annotations[AnnotationPaused]; ok {
		switch v {
		case "true":
			p.Paused = true
		case "false", "":
		default:
			errs = append(errs, annotationErr(AnnotationPaused, v, errors.New(`want "true" or "false"`)))
		}
	}

	if len(errs) > 0 {
		return Policy{}, true, errors.Join(errs...)
	}
	return p, true, nil
}

// ParseSignalRef parses `external:<metric>[?<labelSelector>]` or `object:<resource>/<name>/<metric>[?<labelSelector>]`.
func ParseSignalRef(s string) (SignalRef, error) {
	body, sel, hasSel := strings.Cut(s, "?")
	ref := SignalRef{Selector: labels.Everything()}
	if hasSel && strings.TrimSpace(sel) != "" {
		parsed, err := labels.Parse(sel)
		if err != nil {
			return SignalRef{}, fmt.Errorf("label selector %q: %w", sel, err)
		}
		ref.Selector = parsed
	}
	kind, rest, ok := strings.Cut(body, ":")
	if !ok {
		return SignalRef{}, errors.New("want external:<metric>[?<labelSelector>] or object:<resource>/<name>/<metric>[?<labelSelector>]")
	}
	switch kind {
	case "external":
		if err := checkMetricName(rest); err != nil {
			return SignalRef{}, err
		}
		ref.Kind, ref.Metric = SignalExternal, rest
	case "object":
		parts := strings.Split(rest, "/")
		if len(parts) != 3 {
			return SignalRef{}, errors.New("want object:<resource>/<name>/<metric>[?<labelSelector>]")
		}
		if msgs := validation.IsDNS1123Subdomain(parts[0]); len(msgs) > 0 {
			return SignalRef{}, fmt.Errorf("resource %q: %s", parts[0], strings.Join(msgs, "; "))
		}
		if msgs := validation.IsDNS1123Subdomain(parts[1]); len(msgs) > 0 {
			return SignalRef{}, fmt.Errorf("object name %q: %s", parts[1], strings.Join(msgs, "; "))
		}
		if err := checkMetricName(parts[2]); err != nil {
			return SignalRef{}, err
		}
		ref.Kind, ref.Resource, ref.Name, ref.Metric = SignalObject, parts[0], parts[1], parts[2]
	default:
		return SignalRef{}, fmt.Errorf("unknown kind %q: want external or object", kind)
	}
	return ref, nil
}

func checkMetricName(m string) error {
	if m == "" {
		return errors.New("empty metric name")
	}
	if strings.ContainsAny(m, "/?% \t\n") {
		return fmt.Errorf("metric name %q: must not contain '/', '?', '%%' or spaces", m)
	}
	return nil
}

// StateFromAnnotations reads the controller's own state annotations; absent keys give the zero State.
func StateFromAnnotations(a map[string]string) (State, error) {
	var st State
	var errs []error
	if v := a[AnnotationSleepingReplicas]; v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		switch {
		case err != nil:
			errs = append(errs, annotationErr(AnnotationSleepingReplicas, v, err))
		case n < 0:
			errs = append(errs, annotationErr(AnnotationSleepingReplicas, v, errors.New("must not be negative")))
		default:
			st.Sleeping, st.SleepingReplicas = true, int32(n)
		}
	}
	if v := a[AnnotationIdleSince]; v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			errs = append(errs, annotationErr(AnnotationIdleSince, v, err))
		} else {
			st.IdleSince = t
		}
	}
	if len(errs) > 0 {
		return State{}, errors.Join(errs...)
	}
	return st, nil
}

// Annotations renders s as the controller's state annotations; an "" value means delete the key.
func (s State) Annotations() map[string]string {
	a := map[string]string{AnnotationSleepingReplicas: "", AnnotationIdleSince: ""}
	if s.Sleeping {
		a[AnnotationSleepingReplicas] = strconv.FormatInt(int64(s.SleepingReplicas), 10)
	}
	if !s.IdleSince.IsZero() {
		a[AnnotationIdleSince] = s.IdleSince.UTC().Format(time.RFC3339)
	}
	return a
}
