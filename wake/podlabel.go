package wake

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/klog/v2"
)

// DefaultLeaderPodLabel is the label the chart's push Service selects: the leader's pod carries it, with value "true".
const DefaultLeaderPodLabel = "promql-adapter.io/wake-leader"

// labelPatchTimeout bounds each patch of a pod's labels.
const labelPatchTimeout = 10 * time.Second

// labelAction gives (Set) or takes (!Set) the leader label of one replica's pod.
type labelAction struct {
	Pod string
	Set bool
}

// labelState is what a replica knows about the leader label: whether it leads, what it last applied to its
// own pod, and the other replicas it has seen lead, whose pods may still carry the label.
type labelState struct {
	Self     string
	Leading  bool
	Labelled *bool           // this replica's pod's label as last applied; nil: unknown (at start)
	Stale    map[string]bool // replicas seen leading, other than Self, not yet unlabelled by this one
}

// plan is the patches that put the label where it belongs: on the leader's pod and on no other. The leader
// labels its own pod first (pushes reach it sooner), then takes the label from every replica it has seen
// lead: one that crashed, or lost the API server, cannot remove its own. A standby only clears its own
// pod; it does not know whether the replica it saw lead still does.
func (s labelState) plan() []labelAction {
	var out []labelAction
	if !s.Leading {
		if s.Labelled == nil || *s.Labelled {
			out = append(out, labelAction{Pod: s.Self, Set: false})
		}
		return out
	}
	if s.Labelled == nil || !*s.Labelled {
		out = append(out, labelAction{Pod: s.Self, Set: true})
	}
	var stale []string
	for id := range s.Stale {
		if id != s.Self {
			stale = append(stale, id)
		}
	}
	slices.Sort(stale)
	for _, id := range stale {
		out = append(out, labelAction{Pod: id, Set: false})
	}
	return out
}

// saw records identities reported as leader.
func (s *labelState) saw(ids []string) {
	for _, id := range ids {
		if id != s.Self && id != "" {
			if s.Stale == nil {
				s.Stale = map[string]bool{}
			}
			s.Stale[id] = true
		}
	}
}

// done records the outcome of a; a failed action stays in the plan and is tried again. Taking the label
// from a pod that is gone has succeeded.
func (s *labelState) done(a labelAction, err error) {
	if err != nil && (a.Set || !apierrors.IsNotFound(err)) {
		return
	}
	if a.Pod == s.Self {
		s.Labelled = &a.Set
		return
	}
	delete(s.Stale, a.Pod)
}

// labelPatch is the JSON merge patch that sets key to "true" or removes it.
func labelPatch(key string, set bool) []byte {
	var v any // null removes the label; removing an absent label is not an error
	if set {
		v = "true"
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: v}}})
	return b
}

// ValidateLeaderPodLabel checks a label key for --leader-pod-label.
func ValidateLeaderPodLabel(key string) error {
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return fmt.Errorf("--leader-pod-label %q: %s", key, strings.Join(errs, "; "))
	}
	return nil
}

// podLabeler keeps the leader label on the pod of the replica that leads, and off every other replica's
// pod. Replicas' identities are their pod names.
type podLabeler struct {
	pods  typedcorev1.PodInterface
	key   string
	retry time.Duration

	mu    sync.Mutex
	state labelState
}

func newPodLabeler(pods typedcorev1.PodInterface, key, self string, retry time.Duration) *podLabeler {
	return &podLabeler{pods: pods, key: key, retry: retry, state: labelState{Self: self}}
}

// clear tells whether this replica's pod is known not to carry the label.
func (p *podLabeler) clear() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.Labelled != nil && !*p.state.Labelled
}

// run follows l until ctx ends, then takes the label from its own pod (bounded) before it returns.
func (p *podLabeler) run(ctx context.Context, l *Leadership) {
	for {
		term, _ := l.Leading()
		p.mu.Lock()
		p.state.Leading = term != nil
		p.state.saw(l.takeLeaders())
		plan := p.state.plan()
		p.mu.Unlock()
		for _, a := range plan {
			if ctx.Err() != nil {
				break
			}
			err := p.apply(ctx, a)
			p.mu.Lock()
			p.state.done(a, err)
			p.mu.Unlock()
		}
		var termDone <-chan struct{}
		if term != nil {
			termDone = term.Done()
		}
		var retry <-chan time.Time
		p.mu.Lock()
		pending := len(p.state.plan()) > 0
		p.mu.Unlock()
		if pending {
			retry = time.After(p.retry)
		}
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), labelPatchTimeout)
			a := labelAction{Pod: p.state.Self, Set: false}
			err := p.apply(sctx, a)
			cancel()
			p.mu.Lock()
			p.state.done(a, err)
			p.mu.Unlock()
			return
		case <-l.changed:
		case <-termDone:
		case <-retry:
		}
	}
}

// apply sends one patch.
func (p *podLabeler) apply(ctx context.Context, a labelAction) error {
	ctx, cancel := context.WithTimeout(ctx, labelPatchTimeout)
	defer cancel()
	_, err := p.pods.Patch(ctx, a.Pod, types.MergePatchType, labelPatch(p.key, a.Set), metav1.PatchOptions{FieldManager: "promql-wake"})
	switch {
	case err == nil:
		klog.V(1).InfoS("leader label", "pod", a.Pod, "label", p.key, "set", a.Set)
	case !a.Set && apierrors.IsNotFound(err):
	default:
		klog.ErrorS(err, "leader label: patching the pod failed; trying again", "pod", a.Pod, "label", p.key, "set", a.Set)
	}
	if err != nil {
		return fmt.Errorf("patch pod %s label %s: %w", a.Pod, p.key, err)
	}
	return nil
}
