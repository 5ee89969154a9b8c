package wake

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Signal is one activation signal read this round.
type Signal struct {
	Name  string  // metric name, used in reasons
	Value float64 // value read; NaN is treated like a read error
	Err   error   // non-nil when the value could not be read
}

// State is what the controller persists on the HPA between rounds (see Annotations).
type State struct {
	IdleSince        time.Time // when every signal was first seen idle; zero when not idle
	Sleeping         bool      // the target is at zero because this controller put it there
	SleepingReplicas int32     // replicas the target had when put to sleep (informational)
}

// Action is what the controller must do to the HPA's target.
type Action int

// Actions returned by Decide.
const (
	// None leaves the target's replicas alone.
	None Action = iota
	// Sleep scales the target to zero.
	Sleep
	// Wake scales the target from zero to Decision.Replicas.
	Wake
)

// String returns "None", "Sleep" or "Wake".
func (a Action) String() string {
	switch a {
	case None:
		return "None"
	case Sleep:
		return "Sleep"
	case Wake:
		return "Wake"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is the outcome of one Decide round.
type Decision struct {
	Action   Action        // what to do to the target
	Replicas int32         // replicas to set for Sleep (0) and Wake; the current replicas for None
	Reason   string        // short human sentence for Events and conditions
	State    State         // state to persist on the HPA (see State.Annotations)
	Requeue  time.Duration // when to call Decide again at the latest; always > 0
}

// Decide is the pure scale-to-zero decision for one HPA at now; the rules are in the package documentation.
func Decide(now time.Time, p Policy, current, minReplicas int32, signals []Signal, st State) Decision {
	d := decide(now, p, current, minReplicas, signals, st)
	if d.Requeue <= 0 {
		d.Requeue = DefaultRequeue
	}
	if next := p.NextChange(now); !next.IsZero() {
		if untilNext := next.Sub(now); untilNext < d.Requeue {
			d.Requeue = untilNext
		}
	}
	return d
}

func decide(now time.Time, p Policy, current, minReplicas int32, signals []Signal, st State) Decision {
	none := func(reason string, s State, requeue time.Duration) Decision {
		return Decision{Action: None, Replicas: current, Reason: reason, State: s, Requeue: requeue}
	}
	if p.Paused {
		return none("paused", st, DefaultRequeue)
	}

	// Missing data is neither activity nor idleness.
	noData := st
	noData.IdleSince = time.Time{}
	if len(signals) == 0 {
		return none("no activation signal", noData, DefaultRequeue)
	}
	failing, firstFailing := 0, ""
	for i, s := range signals {
		var why string
		switch {
		case s.Err != nil:
			why = fmt.Sprintf("cannot read activation signal %s: %v", signalName(i, s), s.Err)
		case math.IsNaN(s.Value):
			why = fmt.Sprintf("activation signal %s is NaN", signalName(i, s))
		default:
			continue
		}
		if failing == 0 {
			firstFailing = why
		}
		failing++
	}
	if failing > 0 {
		if failing > 1 {
			firstFailing += fmt.Sprintf(" (and %d more failing)", failing-1)
		}
		// A keep-awake window needs no data: it still wakes a sleeping target.
		if w, ok := p.openWindow(now); ok && w.Floor > 0 && current <= 0 {
			return Decision{
				Action:   Wake,
				Replicas: max(1, minReplicas, w.Floor),
				Reason:   fmt.Sprintf("keep-awake window %s (floor %d); %s", w.spec(), w.Floor, firstFailing),
				State:    State{},
				Requeue:  DefaultRequeue,
			}
		}
		return none(firstFailing, noData, DefaultRequeue)
	}

	threshold := p.Threshold
	thresholdStr := strconv.FormatFloat(threshold, 'g', -1, 64)
	activeReason := ""
	for i, s := range signals {
		if s.Value > threshold {
			activeReason = fmt.Sprintf("%s = %s > %s", signalName(i, s), strconv.FormatFloat(s.Value, 'g', -1, 64), thresholdStr)
			break
		}
	}
	floor, floorReason := int32(0), ""
	if w, ok := p.openWindow(now); ok && w.Floor > 0 {
		floor = w.Floor
		floorReason = fmt.Sprintf("keep-awake window %s (floor %d)", w.spec(), w.Floor)
	}
	awakeReason := joinReasons(activeReason, floorReason)
	idleReason := "every activation signal ≤ " + thresholdStr

	if current <= 0 {
		if awakeReason != "" {
			return Decision{
				Action:   Wake,
				Replicas: max(1, minReplicas, floor),
				Reason:   awakeReason,
				State:    State{},
				Requeue:  DefaultRequeue,
			}
		}
		if st.Sleeping {
			return none("asleep: "+idleReason, State{Sleeping: true, SleepingReplicas: st.SleepingReplicas}, DefaultRequeue)
		}
		return none("scaled to zero outside this controller: "+idleReason, State{}, DefaultRequeue)
	}

	if awakeReason != "" {
		return none(awakeReason, State{}, DefaultRequeue)
	}
	idleAfter := p.IdleAfter
	if idleAfter <= 0 {
		idleAfter = DefaultIdleAfter
	}
	since := st.IdleSince
	if since.IsZero() || since.After(now) { // a future IdleSince (clock skew) restarts the count
		since = now
	}
	idle := now.Sub(since)
	if idle >= idleAfter {
		return Decision{
			Action:   Sleep,
			Replicas: 0,
			Reason:   fmt.Sprintf("idle for %s: %s", idle.Round(time.Second), idleReason),
			State:    State{Sleeping: true, SleepingReplicas: current},
			Requeue:  DefaultRequeue,
		}
	}
	return none(
		fmt.Sprintf("idle for %s of %s: %s", idle.Round(time.Second), idleAfter, idleReason),
		State{IdleSince: since},
		idleAfter-idle,
	)
}

func signalName(i int, s Signal) string {
	if s.Name != "" {
		return s.Name
	}
	return "#" + strconv.Itoa(i+1)
}

func joinReasons(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
