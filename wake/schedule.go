package wake

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // keep-awake windows name IANA zones; do not depend on the image shipping zoneinfo
)

// minutesPerDay is the number of wall-clock minutes in a day; End may equal it ("24:00").
const minutesPerDay = 24 * 60

// nextChangeHorizon bounds how far ahead NextChange looks.
const nextChangeHorizon = 8 * 24 * time.Hour

// dayName is the three-letter English name of d, the form keep-awake windows use.
func dayName(d time.Weekday) string { return d.String()[:3] }

// Window is one keep-awake window, evaluated on the wall clock of its own zone.
type Window struct {
	Days  [7]bool        // days the window starts on, indexed by time.Weekday
	Start int            // minutes after local midnight the window opens, 0..1439
	End   int            // minutes after local midnight it closes, 0..1440; End < Start crosses midnight
	Loc   *time.Location // zone of the wall clock; nil means UTC
	Floor int32          // replicas kept while open (DefaultFloor when parsed without floor=N)
}

// ParseWindow parses one `<days> <HH:MM>-<HH:MM> <IANA zone> [floor=N]` window.
func ParseWindow(s string) (Window, error) {
	f := strings.Fields(s)
	if len(f) < 3 || len(f) > 4 {
		return Window{}, errors.New("want <days> <HH:MM>-<HH:MM> <IANA time zone> [floor=N]")
	}
	w := Window{Floor: DefaultFloor}
	var err error
	if w.Days, err = parseDays(f[0]); err != nil {
		return Window{}, fmt.Errorf("days %q: %w", f[0], err)
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return Window{}, fmt.Errorf("times %q: want <HH:MM>-<HH:MM>", f[1])
	}
	if w.Start, err = parseClock(from, false); err != nil {
		return Window{}, fmt.Errorf("start %q: %w", from, err)
	}
	if w.End, err = parseClock(to, true); err != nil {
		return Window{}, fmt.Errorf("end %q: %w", to, err)
	}
	if w.Start == w.End {
		return Window{}, fmt.Errorf("times %q: empty window (use 00:00-24:00 for a whole day)", f[1])
	}
	if f[2] == "Local" {
		return Window{}, errors.New(`time zone "Local" depends on the controller's host: name an IANA zone`)
	}
	if w.Loc, err = time.LoadLocation(f[2]); err != nil {
		return Window{}, fmt.Errorf("time zone %q: %w", f[2], err)
	}
	if len(f) == 4 {
		v, ok := strings.CutPrefix(f[3], "floor=")
		if !ok {
			return Window{}, fmt.Errorf("%q: want floor=N", f[3])
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return Window{}, fmt.Errorf("floor %q: %w", v, err)
		}
		if n < 1 {
			return Window{}, fmt.Errorf("floor %d: must be at least 1", n)
		}
		w.Floor = int32(n)
	}
	return w, nil
}

// parseDays parses `*`, `Mon`, `Sat,Sun`, `Mon-Fri` and combinations such as `Mon-Wed,Fri`; ranges may wrap (`Fri-Mon`).
func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if s == "*" {
		for i := range days {
			days[i] = true
		}
		return days, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, err := parseDay(from)
		if err != nil {
			return days, err
		}
		b := a
		if isRange {
			if b, err = parseDay(to); err != nil {
				return days, err
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return days, nil
}

func parseDay(s string) (time.Weekday, error) {
	for d := time.Sunday; d <= time.Saturday; d++ {
		if strings.EqualFold(s, dayName(d)) {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown day %q: want Mon, Tue, Wed, Thu, Fri, Sat, Sun or *", s)
}

// parseClock parses H:MM or HH:MM into minutes after midnight; 24:00 only when allow24.
func parseClock(s string, allow24 bool) (int, error) {
	hs, ms, ok := strings.Cut(s, ":")
	if !ok || len(hs) < 1 || len(hs) > 2 || len(ms) != 2 {
		return 0, errors.New("want HH:MM")
	}
	h, err1 := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	if err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 {
		return 0, errors.New("want HH:MM")
	}
	if allow24 && h == 24 && m == 0 {
		return minutesPerDay, nil
	}
	if h > 23 {
		return 0, errors.New("hour out of range 00..23")
	}
	return h*60 + m, nil
}

// String renders w back to the keep-awake annotation syntax (floor=N omitted when it is DefaultFloor).
func (w Window) String() string {
	s := w.spec()
	if w.Floor != DefaultFloor {
		s += " floor=" + strconv.FormatInt(int64(w.Floor), 10)
	}
	return s
}

// spec renders w without its floor, e.g. "Mon-Fri 09:00-17:00 Europe/Paris".
func (w Window) spec() string {
	return fmt.Sprintf("%s %s-%s %s", formatDays(w.Days), formatClock(w.Start), formatClock(w.End), w.loc())
}

func formatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// formatDays renders days Monday first, runs of three or more as ranges; a run over Sunday→Monday goes last.
func formatDays(days [7]bool) string {
	order := [7]time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday}
	type run struct{ from, n int } // positions in order
	var runs []run
	for i := 0; i < 7; i++ {
		if !days[order[i]] {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1].from+runs[len(runs)-1].n == i {
			runs[len(runs)-1].n++
		} else {
			runs = append(runs, run{i, 1})
		}
	}
	switch {
	case len(runs) == 0:
		return "-" // no day at all: never open (not producible by ParseWindow)
	case len(runs) == 1 && runs[0].n == 7:
		return "*"
	}
	if len(runs) > 1 && runs[0].from == 0 && runs[len(runs)-1].from+runs[len(runs)-1].n == 7 {
		last := runs[len(runs)-1]
		runs = append(runs[1:len(runs)-1], run{last.from, last.n + runs[0].n})
	}
	var parts []string
	for _, r := range runs {
		name := func(k int) string { return dayName(order[(r.from+k)%7]) }
		switch r.n {
		case 1:
			parts = append(parts, name(0))
		case 2:
			parts = append(parts, name(0)+","+name(1))
		default:
			parts = append(parts, name(0)+"-"+name(r.n-1))
		}
	}
	return strings.Join(parts, ",")
}

func (w Window) loc() *time.Location {
	if w.Loc == nil {
		return time.UTC
	}
	return w.Loc
}

// Contains reports whether t falls in w, read on the wall clock of w's zone; a window crossing midnight belongs to the day it starts on.
func (w Window) Contains(t time.Time) bool {
	// Wall-clock minutes, not elapsed time: across DST changes this is what the annotation's author reads on a clock.
	lt := t.In(w.loc())
	h, m, _ := lt.Clock()
	mins := h*60 + m
	wd := lt.Weekday()
	if w.Start < w.End {
		return w.Days[wd] && mins >= w.Start && mins < w.End
	}
	return (w.Days[wd] && mins >= w.Start) || (w.Days[(wd+6)%7] && mins < w.End)
}

// changesAt reports whether w opens or closes exactly at c.
func (w Window) changesAt(c time.Time) bool {
	return w.Contains(c) != w.Contains(c.Add(-time.Nanosecond))
}

// nextChange returns the first instant in (t, limit) at which w opens or closes, or the zero Time.
//
// Between two offset changes of the zone the wall clock is UTC plus a fixed
// offset, so the candidates are the window's boundaries computed at that
// offset plus the offset changes themselves; each is kept only if Contains
// really flips there.
func (w Window) nextChange(t, limit time.Time) time.Time {
	lo, hi := min(w.Start, w.End), max(w.Start, w.End)
	for cur := t; cur.Before(limit); {
		lt := cur.In(w.loc())
		_, offset := lt.Zone()
		_, zoneEnd := lt.ZoneBounds()
		segEnd := limit
		if !zoneEnd.IsZero() && zoneEnd.Before(limit) {
			segEnd = zoneEnd
		}
		fixed := time.FixedZone("", offset)
		ft := cur.In(fixed)
		for day := time.Date(ft.Year(), ft.Month(), ft.Day(), 0, 0, 0, 0, fixed); day.Before(segEnd); day = day.Add(24 * time.Hour) {
			for _, m := range [2]int{lo, hi} {
				c := day.Add(time.Duration(m) * time.Minute)
				if c.After(t) && !c.Before(cur) && c.Before(segEnd) && w.changesAt(c) {
					return c
				}
			}
		}
		if segEnd.Equal(limit) {
			break
		}
		if w.changesAt(segEnd) {
			return segEnd
		}
		cur = segEnd
	}
	return time.Time{}
}

// Floor returns the largest floor among the keep-awake windows open at t, 0 if none is open.
func (p Policy) Floor(t time.Time) int32 {
	w, ok := p.openWindow(t)
	if !ok {
		return 0
	}
	return w.Floor
}

// openWindow returns the open window with the largest floor (the first one on ties).
func (p Policy) openWindow(t time.Time) (Window, bool) {
	var best Window
	found := false
	for _, w := range p.KeepAwake {
		if w.Contains(t) && (!found || w.Floor > best.Floor) {
			best, found = w, true
		}
	}
	return best, found
}

// NextChange returns the next instant after t, within 8 days, at which any keep-awake window opens or closes; the zero Time if none does.
func (p Policy) NextChange(t time.Time) time.Time {
	limit := t.Add(nextChangeHorizon)
	var next time.Time
	for _, w := range p.KeepAwake {
		if c := w.nextChange(t, limit); !c.IsZero() && (next.IsZero() || c.Before(next)) {
			next = c
		}
	}
	return next
}
