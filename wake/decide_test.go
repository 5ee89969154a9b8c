package wake

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// decideClock is the only clock these tests use: Decide takes the time as an argument.
type decideClock struct{ now time.Time }

func (c *decideClock) Now() time.Time               { return c.now }
func (c *decideClock) Step(d time.Duration)         { c.now = c.now.Add(d) }
func newDecideClock(rfc3339 string) *decideClock    { return &decideClock{now: scheduleTime(rfc3339)} }
func decideSignal(name string, v float64) Signal    { return Signal{Name: name, Value: v} }
func decideSignalErr(name string, err error) Signal { return Signal{Name: name, Err: err} }
func decideIdle() []Signal                          { return []Signal{decideSignal("queue_messages_ready", 0)} }
func decideActive(v float64) []Signal               { return []Signal{decideSignal("queue_messages_ready", v)} }
func decidePolicy(t testing.TB, kv ...string) Policy {
	t.Helper()
	p, on, err := ParsePolicy(policyAnnotations(kv...))
	if err != nil || !on {
		t.Fatalf("ParsePolicy(%v): %v, %v", kv, on, err)
	}
	return p
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{None: "None", Sleep: "Sleep", Wake: "Wake", Action(7): "Action(7)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", int(a), got, want)
		}
	}
}

func TestDecide(t *testing.T) {
	// Monday 2026-01-05 12:00 UTC (13:00 in Paris).
	now := scheduleTime("2026-01-05T12:00:00Z")
	def := Policy{IdleAfter: 5 * time.Minute}
	boom := errors.New("prometheus: connection refused")
	tests := []struct {
		name          string
		p             Policy
		current, min  int32
		signals       []Signal
		st            State
		want          Decision // Requeue 0 means DefaultRequeue
		reasonContain bool     // want.Reason is a substring rather than the whole reason
	}{
		{
			name: "paused leaves everything alone, even an active sleeping target",
			p:    Policy{IdleAfter: 5 * time.Minute, Paused: true}, current: 0, min: 1,
			signals: decideActive(12),
			st:      State{Sleeping: true, SleepingReplicas: 4, IdleSince: now.Add(-time.Hour)},
			want:    Decision{Action: None, Replicas: 0, Reason: "paused", State: State{Sleeping: true, SleepingReplicas: 4, IdleSince: now.Add(-time.Hour)}},
		},
		{
			name: "paused does not sleep an idle target",
			p:    Policy{IdleAfter: 5 * time.Minute, Paused: true}, current: 3, min: 1,
			signals: decideIdle(),
			st:      State{IdleSince: now.Add(-time.Hour)},
			want:    Decision{Action: None, Replicas: 3, Reason: "paused", State: State{IdleSince: now.Add(-time.Hour)}},
		},
		{
			name: "a signal error is not idleness: the idle timer restarts",
			p:    def, current: 3, min: 1,
			signals: []Signal{decideSignalErr("queue_messages_ready", boom)},
			st:      State{IdleSince: now.Add(-time.Hour)},
			want:    Decision{Action: None, Replicas: 3, Reason: "cannot read activation signal queue_messages_ready: prometheus: connection refused", State: State{}},
		},
		{
			name: "a signal error never wakes, even with another signal active",
			p:    def, current: 0, min: 1,
			signals: []Signal{decideSignal("a", 50), decideSignalErr("b", boom), decideSignalErr("c", boom)},
			st:      State{Sleeping: true, SleepingReplicas: 2},
			want:    Decision{Action: None, Replicas: 0, Reason: "cannot read activation signal b: prometheus: connection refused (and 1 more failing)", State: State{Sleeping: true, SleepingReplicas: 2}},
		},
		{
			name: "an open keep-awake window wakes despite a signal error",
			p:    Policy{IdleAfter: 5 * time.Minute, KeepAwake: []Window{scheduleWindow(t, "* 00:00-24:00 UTC floor=2")}}, current: 0, min: 1,
			signals:       []Signal{decideSignalErr("a", boom)},
			st:            State{Sleeping: true, SleepingReplicas: 2},
			want:          Decision{Action: Wake, Replicas: 2, Reason: "keep-awake window * 00:00-24:00 UTC (floor 2); cannot read activation signal a"},
			reasonContain: true,
		},
		{
			name: "NaN is missing data",
			p:    def, current: 3, min: 1,
			signals: []Signal{decideSignal("", math.NaN())},
			st:      State{IdleSince: now.Add(-time.Hour)},
			want:    Decision{Action: None, Replicas: 3, Reason: "activation signal #1 is NaN", State: State{}},
		},
		{
			name: "no signal at all",
			p:    def, current: 3, min: 1,
			signals: nil,
			st:      State{IdleSince: now.Add(-time.Hour)},
			want:    Decision{Action: None, Replicas: 3, Reason: "no activation signal", State: State{}},
		},
		{
			name: "active signal keeps an awake target and clears the idle timer",
			p:    def, current: 3, min: 1,
			signals: decideActive(12),
			st:      State{IdleSince: now.Add(-4 * time.Minute)},
			want:    Decision{Action: None, Replicas: 3, Reason: "queue_messages_ready = 12 > 0", State: State{}},
		},
		{
			name: "one active signal out of several is enough",
			p:    Policy{IdleAfter: 5 * time.Minute, Threshold: 0.5}, current: 3, min: 1,
			signals: []Signal{decideSignal("a", 0.5), decideSignal("b", 0.75), decideSignal("c", 100)},
			st:      State{IdleSince: now.Add(-4 * time.Minute)},
			want:    Decision{Action: None, Replicas: 3, Reason: "b = 0.75 > 0.5", State: State{}},
		},
		{
			name: "a value equal to the threshold is idle",
			p:    Policy{IdleAfter: 5 * time.Minute, Threshold: 5}, current: 3, min: 1,
			signals: decideActive(5),
			want:    Decision{Action: None, Replicas: 3, Reason: "idle for 0s of 5m0s: every activation signal ≤ 5", State: State{IdleSince: now}, Requeue: 5 * time.Minute},
		},
		{
			name: "first idle sample starts the timer",
			p:    def, current: 3, min: 1,
			signals: decideIdle(),
			want:    Decision{Action: None, Replicas: 3, Reason: "idle for 0s of 5m0s: every activation signal ≤ 0", State: State{IdleSince: now}, Requeue: 5 * time.Minute},
		},
		{
			name: "idle but not long enough: look again when it would be",
			p:    def, current: 3, min: 1,
			signals: decideIdle(),
			st:      State{IdleSince: now.Add(-2 * time.Minute)},
			want:    Decision{Action: None, Replicas: 3, Reason: "idle for 2m0s of 5m0s: every activation signal ≤ 0", State: State{IdleSince: now.Add(-2 * time.Minute)}, Requeue: 3 * time.Minute},
		},
		{
			name: "idle for exactly idle-after sleeps",
			p:    def, current: 3, min: 1,
			signals: decideIdle(),
			st:      State{IdleSince: now.Add(-5 * time.Minute)},
			want:    Decision{Action: Sleep, Replicas: 0, Reason: "idle for 5m0s: every activation signal ≤ 0", State: State{Sleeping: true, SleepingReplicas: 3}},
		},
		{
			name: "idle for longer sleeps and remembers the replicas",
			p:    Policy{IdleAfter: 10 * time.Second, Threshold: 1}, current: 7, min: 2,
			signals: []Signal{decideSignal("a", 1), decideSignal("b", -3)},
			st:      State{IdleSince: now.Add(-time.Hour)},
			want:    Decision{Action: Sleep, Replicas: 0, Reason: "idle for 1h0m0s: every activation signal ≤ 1", State: State{Sleeping: true, SleepingReplicas: 7}},
		},
		{
			name: "an idle-since in the future (clock skew) restarts the timer",
			p:    def, current: 3, min: 1,
			signals: decideIdle(),
			st:      State{IdleSince: now.Add(time.Hour)},
			want:    Decision{Action: None, Replicas: 3, Reason: "idle for 0s of 5m0s: every activation signal ≤ 0", State: State{IdleSince: now}, Requeue: 5 * time.Minute},
		},
		{
			name: "a zero IdleAfter means the default",
			p:    Policy{}, current: 3, min: 1,
			signals: decideIdle(),
			st:      State{IdleSince: now.Add(-4 * time.Minute)},
			want:    Decision{Action: None, Replicas: 3, Reason: "idle for 4m0s of 5m0s: every activation signal ≤ 0", State: State{IdleSince: now.Add(-4 * time.Minute)}, Requeue: time.Minute},
		},
		{
			name: "a target someone else woke is no longer ours",
			p:    def, current: 2, min: 1,
			signals: decideActive(1),
			st:      State{Sleeping: true, SleepingReplicas: 5},
			want:    Decision{Action: None, Replicas: 2, Reason: "queue_messages_ready = 1 > 0", State: State{}},
		},
		{
			name: "wake on activity to minReplicas, not to the remembered replicas",
			p:    def, current: 0, min: 1,
			signals: decideActive(12),
			st:      State{Sleeping: true, SleepingReplicas: 5},
			want:    Decision{Action: Wake, Replicas: 1, Reason: "queue_messages_ready = 12 > 0", State: State{}},
		},
		{
			name: "wake to a larger minReplicas",
			p:    def, current: 0, min: 3,
			signals: decideActive(12),
			st:      State{Sleeping: true, SleepingReplicas: 5},
			want:    Decision{Action: Wake, Replicas: 3, Reason: "queue_messages_ready = 12 > 0", State: State{}},
		},
		{
			name: "wake to at least one when the HPA allows zero",
			p:    def, current: 0, min: 0,
			signals: decideActive(12),
			want:    Decision{Action: Wake, Replicas: 1, Reason: "queue_messages_ready = 12 > 0", State: State{}},
		},
		{
			name: "stay asleep while idle",
			p:    def, current: 0, min: 1,
			signals: decideIdle(),
			st:      State{Sleeping: true, SleepingReplicas: 5, IdleSince: now.Add(-time.Hour)},
			want:    Decision{Action: None, Replicas: 0, Reason: "asleep: every activation signal ≤ 0", State: State{Sleeping: true, SleepingReplicas: 5}},
		},
		{
			name: "zeroed by someone else and idle: leave it, and do not claim it",
			p:    def, current: 0, min: 1,
			signals: decideIdle(),
			want:    Decision{Action: None, Replicas: 0, Reason: "scaled to zero outside this controller: every activation signal ≤ 0", State: State{}},
		},
		{
			name: "zeroed by someone else and active: wake it, still not ours",
			p:    def, current: 0, min: 2,
			signals: decideActive(3),
			want:    Decision{Action: Wake, Replicas: 2, Reason: "queue_messages_ready = 3 > 0", State: State{Sleeping: false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(now, tt.p, tt.current, tt.min, tt.signals, tt.st)
			want := tt.want
			if want.Requeue == 0 {
				want.Requeue = DefaultRequeue
			}
			reasonOK := got.Reason == want.Reason || (tt.reasonContain && strings.Contains(got.Reason, want.Reason))
			if got.Action != want.Action || got.Replicas != want.Replicas || !reasonOK || !decideSameState(got.State, want.State) || got.Requeue != want.Requeue {
				t.Errorf("Decide =\n %s\nwant\n %s", decideFormat(got), decideFormat(want))
			}
		})
	}
}

func TestDecideKeepAwake(t *testing.T) {
	// Monday 2026-01-05; 09:00-17:00 Paris is 08:00-16:00 UTC.
	p := decidePolicy(t, KeyKeepAwake, "Mon-Fri 09:00-17:00 Europe/Paris floor=2; Mon 12:00-13:00 Europe/Paris floor=4")
	tests := []struct {
		name         string
		at           string
		current, min int32
		signals      []Signal
		st           State
		want         Decision
	}{
		{
			name: "an open window wakes an idle target to its floor",
			at:   "2026-01-05T08:00:00Z", current: 0, min: 1, signals: decideIdle(),
			st:   State{Sleeping: true, SleepingReplicas: 6},
			want: Decision{Action: Wake, Replicas: 2, Reason: "keep-awake window Mon-Fri 09:00-17:00 Europe/Paris (floor 2)", Requeue: time.Second},
		},
		{
			name: "overlapping windows: the largest floor",
			at:   "2026-01-05T11:30:00Z", current: 0, min: 1, signals: decideIdle(),
			want: Decision{Action: Wake, Replicas: 4, Reason: "keep-awake window Mon 12:00-13:00 Europe/Paris (floor 4)", Requeue: time.Second},
		},
		{
			name: "minReplicas above the floor",
			at:   "2026-01-05T08:00:00Z", current: 0, min: 3, signals: decideIdle(),
			want: Decision{Action: Wake, Replicas: 3, Reason: "keep-awake window Mon-Fri 09:00-17:00 Europe/Paris (floor 2)", Requeue: time.Second},
		},
		{
			name: "an open window wakes even while a signal cannot be read",
			at:   "2026-01-05T08:00:00Z", current: 0, min: 1, signals: []Signal{{Name: "queue_messages_ready", Err: errors.New("503")}},
			st:   State{Sleeping: true, SleepingReplicas: 6},
			want: Decision{Action: Wake, Replicas: 2, Reason: "keep-awake window Mon-Fri 09:00-17:00 Europe/Paris (floor 2); cannot read activation signal queue_messages_ready: 503", Requeue: time.Second},
		},
		{
			name: "outside a window an unreadable signal changes nothing",
			at:   "2026-01-05T18:00:00Z", current: 0, min: 1, signals: []Signal{{Name: "queue_messages_ready", Err: errors.New("503")}},
			st:   State{Sleeping: true, SleepingReplicas: 6},
			want: Decision{Action: None, Replicas: 0, Reason: "cannot read activation signal queue_messages_ready: 503", State: State{Sleeping: true, SleepingReplicas: 6}, Requeue: time.Second},
		},
		{
			name: "activity and a window both explain a wake",
			at:   "2026-01-05T08:00:00Z", current: 0, min: 1, signals: decideActive(9),
			want: Decision{Action: Wake, Replicas: 2, Reason: "queue_messages_ready = 9 > 0; keep-awake window Mon-Fri 09:00-17:00 Europe/Paris (floor 2)", Requeue: time.Second},
		},
		{
			name: "an open window keeps an idle awake target and clears the idle timer",
			at:   "2026-01-05T15:00:00Z", current: 1, min: 1, signals: decideIdle(),
			st:   State{IdleSince: scheduleTime("2026-01-05T08:00:00Z")},
			want: Decision{Action: None, Replicas: 1, Reason: "keep-awake window Mon-Fri 09:00-17:00 Europe/Paris (floor 2)", Requeue: time.Second},
		},
		{
			name: "the idle timer starts when the window closes, and the requeue stops at the next opening",
			at:   "2026-01-05T16:00:00Z", current: 2, min: 1, signals: decideIdle(),
			want: Decision{Action: None, Replicas: 2, Reason: "idle for 0s of 5m0s: every activation signal ≤ 0", State: State{IdleSince: scheduleTime("2026-01-05T16:00:00Z")}, Requeue: 5 * time.Minute},
		},
		{
			name: "requeue never passes the next window change",
			at:   "2026-01-05T07:58:00Z", current: 2, min: 1, signals: decideIdle(),
			want: Decision{Action: None, Replicas: 2, Reason: "idle for 0s of 5m0s: every activation signal ≤ 0", State: State{IdleSince: scheduleTime("2026-01-05T07:58:00Z")}, Requeue: 2 * time.Minute},
		},
		{
			name: "asleep half a second before the window opens",
			at:   "2026-01-05T07:59:59.5Z", current: 0, min: 1, signals: decideIdle(),
			st:   State{Sleeping: true, SleepingReplicas: 2},
			want: Decision{Action: None, Replicas: 0, Reason: "asleep: every activation signal ≤ 0", State: State{Sleeping: true, SleepingReplicas: 2}, Requeue: 500 * time.Millisecond},
		},
		{
			name: "awake half a second before the window closes",
			at:   "2026-01-05T15:59:59.5Z", current: 2, min: 1, signals: decideActive(1),
			want: Decision{Action: None, Replicas: 2, Reason: "queue_messages_ready = 1 > 0; keep-awake window Mon-Fri 09:00-17:00 Europe/Paris (floor 2)", Requeue: 500 * time.Millisecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, err := time.Parse(time.RFC3339Nano, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			got := Decide(at, p, tt.current, tt.min, tt.signals, tt.st)
			if got.Action != tt.want.Action || got.Replicas != tt.want.Replicas || got.Reason != tt.want.Reason || !decideSameState(got.State, tt.want.State) || got.Requeue != tt.want.Requeue {
				t.Errorf("Decide =\n %s\nwant\n %s", decideFormat(got), decideFormat(tt.want))
			}
		})
	}

	paused := p
	paused.Paused = true
	if got := Decide(scheduleTime("2026-01-05T15:59:59.75Z"), paused, 2, 1, decideIdle(), State{}); got.Requeue != 250*time.Millisecond || got.Reason != "paused" {
		t.Errorf("paused: %s, want a requeue of 250ms, when the window closes", decideFormat(got))
	}
	p.IdleAfter = time.Hour
	if got := Decide(scheduleTime("2026-01-05T07:00:00Z"), p, 2, 1, decideIdle(), State{}); got.Requeue != time.Hour {
		t.Errorf("Requeue = %v, want 1h: the window opens exactly when the idle timer would fire", got.Requeue)
	}
	if got := Decide(scheduleTime("2026-01-05T07:30:00Z"), p, 2, 1, decideIdle(), State{}); got.Requeue != 30*time.Minute {
		t.Errorf("Requeue = %v, want 30m: the window opens before the idle timer fires", got.Requeue)
	}
}

func decideSameState(a, b State) bool {
	return a.IdleSince.Equal(b.IdleSince) && a.Sleeping == b.Sleeping && a.SleepingReplicas == b.SleepingReplicas
}

func decideFormat(d Decision) string {
	since := "-"
	if !d.State.IdleSince.IsZero() {
		since = d.State.IdleSince.UTC().Format(time.RFC3339Nano)
	}
	return strings.Join([]string{
		d.Action.String(), "replicas=" + decideItoa(d.Replicas), "reason=" + `"` + d.Reason + `"`,
		"idleSince=" + since, "sleeping=" + decideBool(d.State.Sleeping), "sleepingReplicas=" + decideItoa(d.State.SleepingReplicas),
		"requeue=" + d.Requeue.String(),
	}, " ")
}

func decideItoa(n int32) string { return strconv.Itoa(int(n)) }
func decideBool(b bool) string  { return strconv.FormatBool(b) }

// decideEvent is one Sleep or Wake applied by the simulated controller.
type decideEvent struct {
	at       time.Time
	action   Action
	replicas int32
}

// decideSimulation is a minimal controller around Decide: it persists State through
// its annotations, applies actions to a fake target and lets the fake clock run.
type decideSimulation struct {
	t       testing.TB
	clock   *decideClock
	p       Policy
	min     int32
	current int32
	st      State
	signals func(time.Time) []Signal
	step    func(Decision) time.Duration // how long the controller waits after a decision
	events  []decideEvent
	rounds  int
}

func (s *decideSimulation) runUntil(end time.Time) {
	s.t.Helper()
	for s.clock.Now().Before(end) {
		now := s.clock.Now()
		d := Decide(now, s.p, s.current, s.min, s.signals(now), s.st)
		s.rounds++
		if d.Requeue <= 0 {
			s.t.Fatalf("%s: Requeue %v ≤ 0", now, d.Requeue)
		}
		if next := s.p.NextChange(now); !next.IsZero() && now.Add(d.Requeue).After(next) {
			s.t.Fatalf("%s: Requeue %v passes the window change at %s", now, d.Requeue, next)
		}
		switch d.Action {
		case Sleep, Wake:
			s.current = d.Replicas
			s.events = append(s.events, decideEvent{now, d.Action, d.Replicas})
		}
		// Persist through the annotations, as the controller does (RFC3339 keeps whole seconds).
		st, err := StateFromAnnotations(d.State.Annotations())
		if err != nil {
			s.t.Fatal(err)
		}
		s.st = st
		s.clock.Step(s.step(d))
	}
}

func decideEvery(d time.Duration) func(Decision) time.Duration {
	return func(Decision) time.Duration { return d }
}

func decideHonourRequeue(d Decision) time.Duration { return d.Requeue }

func TestFlappingSignalNeverSleeps(t *testing.T) {
	clock := newDecideClock("2026-01-05T10:00:00Z")
	start := clock.Now()
	stopFlapping := start.Add(2 * time.Hour)
	s := &decideSimulation{
		t: t, clock: clock, min: 1, current: 3,
		p: decidePolicy(t, KeyIdleAfter, "5m"),
		// Active for one minute in every four: idle stretches of 3m are shorter than idle-after.
		signals: func(now time.Time) []Signal {
			if now.Before(stopFlapping) && now.Sub(start)%(4*time.Minute) < time.Minute {
				return decideActive(1)
			}
			return decideIdle()
		},
		step: decideEvery(30 * time.Second),
	}
	s.runUntil(stopFlapping)
	if len(s.events) != 0 {
		t.Fatalf("a signal flapping faster than idle-after caused %v", s.events)
	}
	// Once the flapping stops, the target sleeps idle-after after the first idle sample.
	// The last active sample is at 1h56m30s, so the first idle one is at 1h57m.
	s.runUntil(stopFlapping.Add(10 * time.Minute))
	want := []decideEvent{{start.Add(2*time.Hour + 2*time.Minute), Sleep, 0}}
	if !decideSameEvents(s.events, want) {
		t.Fatalf("events %v, want %v", s.events, want)
	}
}

func TestSingleActiveSampleResetsIdleTimer(t *testing.T) {
	p := decidePolicy(t, KeyIdleAfter, "5m")
	t0 := scheduleTime("2026-01-05T10:00:00Z")
	st := Decide(t0, p, 2, 1, decideIdle(), State{}).State
	st = Decide(t0.Add(4*time.Minute), p, 2, 1, decideIdle(), st).State
	st = Decide(t0.Add(4*time.Minute+30*time.Second), p, 2, 1, decideActive(1), st).State
	if !st.IdleSince.IsZero() {
		t.Fatalf("IdleSince = %v after an active sample", st.IdleSince)
	}
	d := Decide(t0.Add(5*time.Minute), p, 2, 1, decideIdle(), st)
	if d.Action != None || !d.State.IdleSince.Equal(t0.Add(5*time.Minute)) || d.Requeue != 5*time.Minute {
		t.Fatalf("after the reset: %s", decideFormat(d))
	}
	d = Decide(t0.Add(9*time.Minute+59*time.Second), p, 2, 1, decideIdle(), d.State)
	if d.Action != None || d.Requeue != time.Second {
		t.Fatalf("one second before sleeping: %s", decideFormat(d))
	}
	d = Decide(t0.Add(10*time.Minute), p, 2, 1, decideIdle(), d.State)
	if d.Action != Sleep {
		t.Fatalf("after idle-after: %s", decideFormat(d))
	}
}

func TestSleepAndWakeHonouringRequeue(t *testing.T) {
	clock := newDecideClock("2026-01-05T10:00:00Z")
	start := clock.Now()
	busyAt := start.Add(time.Hour + 123*time.Millisecond)
	s := &decideSimulation{
		t: t, clock: clock, min: 2, current: 5,
		p: decidePolicy(t, KeyIdleAfter, "15m", KeyActivationThreshold, "10"),
		signals: func(now time.Time) []Signal {
			if now.Before(busyAt) {
				return []Signal{decideSignal("q", 10), decideSignal("r", 3)}
			}
			return []Signal{decideSignal("q", 10), decideSignal("r", 11)}
		},
		step: decideHonourRequeue,
	}
	s.runUntil(start.Add(2 * time.Hour))
	want := []decideEvent{
		{start.Add(15 * time.Minute), Sleep, 0},
		{start.Add(time.Hour + time.Second), Wake, 2}, // the first 1s poll after the signal rose
	}
	if !decideSameEvents(s.events, want) {
		t.Fatalf("events %v, want %v", s.events, want)
	}
	// Awake, idle: two rounds. Asleep: one round a second. Awake again: one a second.
	if s.rounds > 2+3600+3600+2 {
		t.Errorf("%d rounds", s.rounds)
	}
}

func TestWakeFromHumanZero(t *testing.T) {
	clock := newDecideClock("2026-01-05T10:00:00Z")
	start := clock.Now()
	busyAt := start.Add(30 * time.Minute)
	s := &decideSimulation{
		t: t, clock: clock, min: 3, current: 0, // a human scaled the target to zero
		p: decidePolicy(t, KeyIdleAfter, "10s"),
		signals: func(now time.Time) []Signal {
			if now.Before(busyAt) {
				return decideIdle()
			}
			return decideActive(1)
		},
		step: decideEvery(10 * time.Second),
	}
	s.runUntil(busyAt)
	if len(s.events) != 0 || s.st.Sleeping {
		t.Fatalf("idle human zero: events %v, state %+v", s.events, s.st)
	}
	s.runUntil(busyAt.Add(time.Minute))
	want := []decideEvent{{busyAt, Wake, 3}}
	if !decideSameEvents(s.events, want) || s.st.Sleeping {
		t.Fatalf("events %v state %+v, want %v and not sleeping", s.events, s.st, want)
	}
}

// TestScheduleAcrossDST runs a week-end-and-Monday around each 2026 Europe/Paris DST change.
func TestScheduleAcrossDST(t *testing.T) {
	tests := []struct {
		name       string
		from, to   string
		wantEvents []decideEvent
	}{
		{
			name: "spring forward",
			from: "2026-03-27T14:00:00Z", to: "2026-03-30T18:00:00Z",
			wantEvents: []decideEvent{
				{scheduleTime("2026-03-27T16:05:00Z"), Sleep, 0}, // Fri 17:00 CET + 5m
				{scheduleTime("2026-03-28T21:00:00Z"), Wake, 1},  // Sat 22:00 CET: night batch window
				{scheduleTime("2026-03-29T02:05:00Z"), Sleep, 0}, // Sun 04:00 CEST + 5m: a five-hour night
				{scheduleTime("2026-03-30T07:00:00Z"), Wake, 2},  // Mon 09:00 CEST
				{scheduleTime("2026-03-30T15:05:00Z"), Sleep, 0}, // Mon 17:00 CEST + 5m
			},
		},
		{
			name: "fall back",
			from: "2026-10-23T14:00:00Z", to: "2026-10-26T18:00:00Z",
			wantEvents: []decideEvent{
				{scheduleTime("2026-10-23T15:05:00Z"), Sleep, 0}, // Fri 17:00 CEST + 5m
				{scheduleTime("2026-10-24T20:00:00Z"), Wake, 1},  // Sat 22:00 CEST
				{scheduleTime("2026-10-25T03:05:00Z"), Sleep, 0}, // Sun 04:00 CET + 5m: a seven-hour night
				{scheduleTime("2026-10-26T08:00:00Z"), Wake, 2},  // Mon 09:00 CET
				{scheduleTime("2026-10-26T16:05:00Z"), Sleep, 0}, // Mon 17:00 CET + 5m
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &decideSimulation{
				t: t, clock: newDecideClock(tt.from), min: 1, current: 4,
				p:       decidePolicy(t, KeyKeepAwake, "Mon-Fri 09:00-17:00 Europe/Paris floor=2; Sat 22:00-04:00 Europe/Paris"),
				signals: func(time.Time) []Signal { return decideIdle() },
				step:    decideEvery(time.Minute),
			}
			s.runUntil(scheduleTime(tt.to))
			if !decideSameEvents(s.events, tt.wantEvents) {
				t.Fatalf("events\n got %v\nwant %v", s.events, tt.wantEvents)
			}
		})
	}
}

func decideSameEvents(a, b []decideEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].at.Equal(b[i].at) || a[i].action != b[i].action || a[i].replicas != b[i].replicas {
			return false
		}
	}
	return true
}

func (e decideEvent) String() string {
	return e.at.UTC().Format(time.RFC3339Nano) + " " + e.action.String() + " " + decideItoa(e.replicas)
}
