package wake

import (
	"strings"
	"testing"
	"time"
)

func scheduleLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

func scheduleWindow(t testing.TB, s string) Window {
	t.Helper()
	w, err := ParseWindow(s)
	if err != nil {
		t.Fatalf("ParseWindow(%q): %v", s, err)
	}
	return w
}

func scheduleTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseWindow(t *testing.T) {
	paris := scheduleLoc(t, "Europe/Paris")
	weekdays := [7]bool{false, true, true, true, true, true, false}
	tests := []struct {
		in   string
		want Window
		str  string
	}{
		{"Mon-Fri 09:00-17:00 Europe/Paris", Window{Days: weekdays, Start: 540, End: 1020, Loc: paris, Floor: 1}, "Mon-Fri 09:00-17:00 Europe/Paris"},
		{"Sat,Sun 10:00-12:30 UTC floor=3", Window{Days: [7]bool{true, false, false, false, false, false, true}, Start: 600, End: 750, Loc: time.UTC, Floor: 3}, "Sat,Sun 10:00-12:30 UTC floor=3"},
		{"Mon 9:05-9:10 UTC", Window{Days: [7]bool{1: true}, Start: 545, End: 550, Loc: time.UTC, Floor: 1}, "Mon 09:05-09:10 UTC"},
		{"* 00:00-24:00 UTC", Window{Days: [7]bool{true, true, true, true, true, true, true}, Start: 0, End: 1440, Loc: time.UTC, Floor: 1}, "* 00:00-24:00 UTC"},
		{"Fri 22:00-02:00 Europe/Paris floor=2", Window{Days: [7]bool{5: true}, Start: 1320, End: 120, Loc: paris, Floor: 2}, "Fri 22:00-02:00 Europe/Paris floor=2"},
		{"fri-mon 08:00-09:00 UTC", Window{Days: [7]bool{true, true, false, false, false, true, true}, Start: 480, End: 540, Loc: time.UTC, Floor: 1}, "Fri-Mon 08:00-09:00 UTC"},
		{"Mon-Wed,Fri,Sun 08:00-09:00 UTC", Window{Days: [7]bool{true, true, true, true, false, true, false}, Start: 480, End: 540, Loc: time.UTC, Floor: 1}, "Fri,Sun-Wed 08:00-09:00 UTC"},
		{"Mon,Tue 08:00-09:00 UTC", Window{Days: [7]bool{1: true, 2: true}, Start: 480, End: 540, Loc: time.UTC, Floor: 1}, "Mon,Tue 08:00-09:00 UTC"},
		{"  Mon-Sun   08:00-09:00  UTC  ", Window{Days: [7]bool{true, true, true, true, true, true, true}, Start: 480, End: 540, Loc: time.UTC, Floor: 1}, "* 08:00-09:00 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseWindow(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.Days != tt.want.Days || got.Start != tt.want.Start || got.End != tt.want.End || got.Floor != tt.want.Floor || got.Loc.String() != tt.want.Loc.String() {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			again, err := ParseWindow(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("round trip of %q: %v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseWindowErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Mon-Fri 09:00-17:00", "want <days> <HH:MM>-<HH:MM> <IANA time zone> [floor=N]"},
		{"Mon-Fri 09:00-17:00 UTC floor=1 extra", "want <days>"},
		{"Mun 09:00-17:00 UTC", `days "Mun": unknown day "Mun"`},
		{"Mon-Fro 09:00-17:00 UTC", `unknown day "Fro"`},
		{"Mon,,Tue 09:00-17:00 UTC", `unknown day ""`},
		{"Mon 09:00 UTC", `times "09:00": want <HH:MM>-<HH:MM>`},
		{"Mon 9-17 UTC", `start "9": want HH:MM`},
		{"Mon 09:00-17:0 UTC", `end "17:0": want HH:MM`},
		{"Mon 25:00-26:00 UTC", `start "25:00": hour out of range`},
		{"Mon 24:00-02:00 UTC", `start "24:00": hour out of range`},
		{"Mon 09:60-10:00 UTC", `start "09:60": want HH:MM`},
		{"Mon 09:00-24:01 UTC", `end "24:01"`},
		{"Mon 09:00-09:00 UTC", "empty window"},
		{"Mon 09:00-17:00 Mars/Olympus_Mons", `time zone "Mars/Olympus_Mons": unknown time zone`},
		{"Mon 09:00-17:00 Local", `"Local" depends on the controller's host`},
		{"Mon 09:00-17:00 UTC floor=0", "floor 0: must be at least 1"},
		{"Mon 09:00-17:00 UTC floor=-2", "floor -2: must be at least 1"},
		{"Mon 09:00-17:00 UTC floor=x", `floor "x": strconv.ParseInt`},
		{"Mon 09:00-17:00 UTC floor=3000000000", `floor "3000000000"`},
		{"Mon 09:00-17:00 UTC min=2", `"min=2": want floor=N`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseWindow(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseWindow(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestWindowContains(t *testing.T) {
	tests := []struct {
		window string
		at     string // RFC3339
		want   bool
	}{
		// Plain weekday window in winter (CET, UTC+1) and summer (CEST, UTC+2).
		{"Mon-Fri 09:00-17:00 Europe/Paris", "2026-01-05T07:59:59Z", false}, // Mon 08:59:59
		{"Mon-Fri 09:00-17:00 Europe/Paris", "2026-01-05T08:00:00Z", true},  // Mon 09:00
		{"Mon-Fri 09:00-17:00 Europe/Paris", "2026-01-05T15:59:59Z", true},  // Mon 16:59:59
		{"Mon-Fri 09:00-17:00 Europe/Paris", "2026-01-05T16:00:00Z", false}, // Mon 17:00
		{"Mon-Fri 09:00-17:00 Europe/Paris", "2026-07-06T07:00:00Z", true},  // Mon 09:00 CEST
		{"Mon-Fri 09:00-17:00 Europe/Paris", "2026-07-06T06:59:00Z", false}, // Mon 08:59 CEST
		{"Mon-Fri 09:00-17:00 Europe/Paris", "2026-01-10T10:00:00Z", false}, // Saturday
		// The local day, not the UTC day, decides: Tue 00:30 Paris is Mon 23:30 UTC.
		{"Tue 00:00-01:00 Europe/Paris", "2026-01-05T23:30:00Z", true},
		{"Mon 00:00-01:00 Europe/Paris", "2026-01-05T23:30:00Z", false},
		// Across midnight: the window belongs to the day it starts on.
		{"Fri 22:00-02:00 Europe/Paris", "2026-01-09T20:59:00Z", false}, // Fri 21:59
		{"Fri 22:00-02:00 Europe/Paris", "2026-01-09T21:00:00Z", true},  // Fri 22:00
		{"Fri 22:00-02:00 Europe/Paris", "2026-01-09T23:30:00Z", true},  // Sat 00:30
		{"Fri 22:00-02:00 Europe/Paris", "2026-01-10T00:59:00Z", true},  // Sat 01:59
		{"Fri 22:00-02:00 Europe/Paris", "2026-01-10T01:00:00Z", false}, // Sat 02:00
		{"Fri 22:00-02:00 Europe/Paris", "2026-01-10T21:30:00Z", false}, // Sat 22:30: Saturday is not a start day
		{"Fri 22:00-02:00 Europe/Paris", "2026-01-09T00:30:00Z", false}, // Fri 01:30: belongs to Thursday
		{"* 00:00-24:00 UTC", "2026-01-09T23:59:59Z", true},
		{"Mon 12:00-24:00 UTC", "2026-01-05T23:59:59Z", true},
		{"Mon 12:00-24:00 UTC", "2026-01-06T00:00:00Z", false},
		// Spring forward, Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z.
		{"* 09:00-17:00 Europe/Paris", "2026-03-29T06:59:00Z", false},   // 08:59 CEST
		{"* 09:00-17:00 Europe/Paris", "2026-03-29T07:00:00Z", true},    // 09:00 CEST
		{"* 09:00-17:00 Europe/Paris", "2026-03-29T14:59:00Z", true},    // 16:59 CEST
		{"* 09:00-17:00 Europe/Paris", "2026-03-29T15:00:00Z", false},   // 17:00 CEST
		{"Sun 02:30-03:30 Europe/Paris", "2026-03-29T00:59:59Z", false}, // 01:59:59 CET
		{"Sun 02:30-03:30 Europe/Paris", "2026-03-29T01:00:00Z", true},  // 03:00 CEST: 02:30 never happened
		{"Sun 02:30-03:30 Europe/Paris", "2026-03-29T01:29:59Z", true},  // 03:29:59 CEST
		{"Sun 02:30-03:30 Europe/Paris", "2026-03-29T01:30:00Z", false}, // 03:30 CEST
		// Fall back, Sunday 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z.
		{"* 09:00-17:00 Europe/Paris", "2026-10-25T07:59:00Z", false},   // 08:59 CET
		{"* 09:00-17:00 Europe/Paris", "2026-10-25T08:00:00Z", true},    // 09:00 CET
		{"* 09:00-17:00 Europe/Paris", "2026-10-25T16:00:00Z", false},   // 17:00 CET
		{"* 09:00-17:00 Europe/Paris", "2026-10-24T07:00:00Z", true},    // Saturday 09:00 CEST
		{"Sun 02:30-03:30 Europe/Paris", "2026-10-25T00:29:00Z", false}, // 02:29 CEST
		{"Sun 02:30-03:30 Europe/Paris", "2026-10-25T00:30:00Z", true},  // 02:30 CEST
		{"Sun 02:30-03:30 Europe/Paris", "2026-10-25T01:00:00Z", false}, // 02:00 CET (the repeated hour)
		{"Sun 02:30-03:30 Europe/Paris", "2026-10-25T01:30:00Z", true},  // 02:30 CET
		{"Sun 02:30-03:30 Europe/Paris", "2026-10-25T02:30:00Z", false}, // 03:30 CET
	}
	for _, tt := range tests {
		t.Run(tt.window+"@"+tt.at, func(t *testing.T) {
			w := scheduleWindow(t, tt.window)
			if got := w.Contains(scheduleTime(tt.at)); got != tt.want {
				t.Errorf("Contains(%s = %s) = %v, want %v", tt.at, scheduleTime(tt.at).In(w.Loc).Format("Mon 15:04 MST"), got, tt.want)
			}
		})
	}
}

func TestWindowNilLocationIsUTC(t *testing.T) {
	w := Window{Days: [7]bool{1: true}, Start: 60, End: 120, Floor: 1}
	if !w.Contains(scheduleTime("2026-01-05T01:30:00Z")) || w.Contains(scheduleTime("2026-01-05T02:00:00Z")) {
		t.Error("a nil Loc must behave as UTC")
	}
	if got := w.String(); got != "Mon 01:00-02:00 UTC" {
		t.Errorf("String() = %q", got)
	}
}

func TestPolicyFloor(t *testing.T) {
	p := Policy{KeepAwake: []Window{
		scheduleWindow(t, "Mon-Fri 08:00-18:00 Europe/Paris"),
		scheduleWindow(t, "Mon-Fri 09:00-12:00 Europe/Paris floor=3"),
		scheduleWindow(t, "Fri 22:00-02:00 Europe/Paris floor=2"),
	}}
	tests := []struct {
		at   string
		want int32
	}{
		{"2026-01-05T06:59:00Z", 0}, // Mon 07:59
		{"2026-01-05T07:00:00Z", 1}, // Mon 08:00
		{"2026-01-05T08:00:00Z", 3}, // Mon 09:00: overlapping windows take the largest floor
		{"2026-01-05T11:00:00Z", 1}, // Mon 12:00
		{"2026-01-05T17:00:00Z", 0}, // Mon 18:00
		{"2026-01-09T23:00:00Z", 2}, // Sat 00:00, in Friday's night window
		{"2026-01-10T09:00:00Z", 0}, // Saturday morning
	}
	for _, tt := range tests {
		if got := p.Floor(scheduleTime(tt.at)); got != tt.want {
			t.Errorf("Floor(%s) = %d, want %d", tt.at, got, tt.want)
		}
	}
	if got := (Policy{}).Floor(scheduleTime("2026-01-05T08:00:00Z")); got != 0 {
		t.Errorf("Floor without windows = %d, want 0", got)
	}
}

func TestNextChange(t *testing.T) {
	tests := []struct {
		name    string
		windows []string
		from    string
		want    []string // successive changes, each found from the previous one; "" means none within 8 days
	}{
		{
			name:    "weekdays from Friday evening skip the weekend",
			windows: []string{"Mon-Fri 09:00-17:00 Europe/Paris"},
			from:    "2026-01-09T17:00:00Z", // Fri 18:00
			want:    []string{"2026-01-12T08:00:00Z", "2026-01-12T16:00:00Z", "2026-01-13T08:00:00Z"},
		},
		{
			name:    "at an opening instant, the next change is the closing",
			windows: []string{"Mon-Fri 09:00-17:00 Europe/Paris"},
			from:    "2026-01-12T08:00:00Z",
			want:    []string{"2026-01-12T16:00:00Z"},
		},
		{
			name:    "spring forward: 09:00 CEST is 07:00Z the day of the change",
			windows: []string{"* 09:00-17:00 Europe/Paris"},
			from:    "2026-03-28T17:00:00Z", // Sat 18:00 CET
			want:    []string{"2026-03-29T07:00:00Z", "2026-03-29T15:00:00Z", "2026-03-30T07:00:00Z"},
		},
		{
			name:    "fall back: 09:00 CET is 08:00Z the day of the change",
			windows: []string{"* 09:00-17:00 Europe/Paris"},
			from:    "2026-10-24T16:00:00Z", // Sat 18:00 CEST
			want:    []string{"2026-10-25T08:00:00Z", "2026-10-25T16:00:00Z", "2026-10-26T08:00:00Z"},
		},
		{
			name:    "spring forward: a window starting in the skipped hour opens at the jump",
			windows: []string{"Sun 02:30-03:30 Europe/Paris"},
			from:    "2026-03-28T22:00:00Z",
			want:    []string{"2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-04-05T00:30:00Z"},
		},
		{
			name:    "fall back: a window in the repeated hour opens twice",
			windows: []string{"Sun 02:30-03:30 Europe/Paris"},
			from:    "2026-10-24T22:00:00Z",
			want:    []string{"2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"},
		},
		{
			name:    "across midnight on the spring-forward night lasts five hours",
			windows: []string{"Sat 22:00-04:00 Europe/Paris"},
			from:    "2026-03-28T12:00:00Z",
			want:    []string{"2026-03-28T21:00:00Z", "2026-03-29T02:00:00Z"},
		},
		{
			name:    "across midnight on the fall-back night lasts seven hours",
			windows: []string{"Sat 22:00-04:00 Europe/Paris"},
			from:    "2026-10-24T12:00:00Z",
			want:    []string{"2026-10-24T20:00:00Z", "2026-10-25T03:00:00Z"},
		},
		{
			name:    "across midnight, from inside the window",
			windows: []string{"Fri 22:00-02:00 Europe/Paris"},
			from:    "2026-01-09T23:00:00Z", // Sat 00:00
			want:    []string{"2026-01-10T01:00:00Z", "2026-01-16T21:00:00Z"},
		},
		{
			name:    "the earliest change of several windows",
			windows: []string{"Mon-Fri 09:00-17:00 Europe/Paris", "* 06:00-07:00 America/New_York floor=2"},
			from:    "2026-01-05T00:00:00Z",
			want:    []string{"2026-01-05T08:00:00Z", "2026-01-05T11:00:00Z", "2026-01-05T12:00:00Z", "2026-01-05T16:00:00Z"},
		},
		{
			name:    "consecutive nights merge: no change at midnight",
			windows: []string{"* 22:00-06:00 UTC"},
			from:    "2026-01-05T23:00:00Z",
			want:    []string{"2026-01-06T06:00:00Z"},
		},
		{
			name:    "always open never changes",
			windows: []string{"* 00:00-24:00 Europe/Paris"},
			from:    "2026-03-28T12:00:00Z",
			want:    []string{""},
		},
		{
			name: "no windows",
			from: "2026-03-28T12:00:00Z",
			want: []string{""},
		},
		{
			name:    "a weekly window is found within 8 days",
			windows: []string{"Mon 09:00-09:01 UTC"},
			from:    "2026-01-05T09:01:00Z",
			want:    []string{"2026-01-12T09:00:00Z", "2026-01-12T09:01:00Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Policy
			for _, s := range tt.windows {
				p.KeepAwake = append(p.KeepAwake, scheduleWindow(t, s))
			}
			at := scheduleTime(tt.from)
			for _, want := range tt.want {
				got := p.NextChange(at)
				if want == "" {
					if !got.IsZero() {
						t.Fatalf("NextChange(%s) = %s, want none", at.UTC().Format(time.RFC3339), got.UTC().Format(time.RFC3339))
					}
					return
				}
				if !got.Equal(scheduleTime(want)) {
					t.Fatalf("NextChange(%s) = %s, want %s", at.UTC().Format(time.RFC3339), got.UTC().Format(time.RFC3339), want)
				}
				// Floor must really differ on either side of the change for at least one window.
				before := p.Floor(got.Add(-time.Nanosecond))
				flipped := false
				for _, w := range p.KeepAwake {
					flipped = flipped || w.Contains(got) != w.Contains(got.Add(-time.Nanosecond))
				}
				if !flipped {
					t.Fatalf("nothing opens or closes at %s (floor before %d)", want, before)
				}
				at = got
			}
		})
	}
}

// TestNextChangeMatchesScan checks NextChange against a minute-by-minute scan over both 2026 Paris DST changes.
func TestNextChangeMatchesScan(t *testing.T) {
	windows := []string{
		"* 02:30-03:30 Europe/Paris",
		"Sat,Sun 01:15-02:45 Europe/Paris floor=2",
		"Sat 23:00-03:00 Europe/Paris",
		"Mon-Fri 09:00-17:00 Europe/Paris",
		"Sun 00:00-24:00 America/New_York", // New York changes on other dates: 2026-03-08, 2026-11-01
	}
	for _, from := range []string{"2026-03-26T00:00:00Z", "2026-10-22T00:00:00Z", "2026-03-05T00:00:00Z", "2026-10-29T00:00:00Z"} {
		for _, s := range windows {
			p := Policy{KeepAwake: []Window{scheduleWindow(t, s)}}
			w := p.KeepAwake[0]
			start := scheduleTime(from)
			end := start.Add(6 * 24 * time.Hour)
			prev := w.Contains(start)
			want := time.Time{}
			at := start
			for m := start.Add(time.Minute); m.Before(end); m = m.Add(time.Minute) {
				if c := w.Contains(m); c != prev {
					want, prev = m, c
					if got := p.NextChange(at); !got.Equal(want) {
						t.Errorf("%s: NextChange(%s) = %s, scan says %s", s, at.UTC().Format(time.RFC3339), got.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339))
					}
					at = want
				}
			}
			if want.IsZero() {
				t.Errorf("%s: the scan found no change from %s", s, from)
			}
		}
	}
}
