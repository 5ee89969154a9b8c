package benchrig

import (
	"os"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	d := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct {
		p    int
		want time.Duration
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}} {
		if got := Percentile(d, c.p); got != c.want {
			t.Errorf("Percentile(%d) = %d, want %d", c.p, got, c.want)
		}
	}
	if d[0] != 5 {
		t.Error("Percentile sorted its argument")
	}
}

func TestOwnProcess(t *testing.T) {
	busy := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(busy) {
	}
	cpu, err := CPUSeconds(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("CPUSeconds = %v, %v; want > 0", cpu, err)
	}
	if _, err := CPUSeconds(-1); err == nil {
		t.Error("CPUSeconds(-1): no error")
	}
	if m := MiB(os.Getpid(), "VmRSS"); m == "?" {
		t.Error("MiB(self, VmRSS) = ?")
	}
	if m := MiB(os.Getpid(), "NoSuchField"); m != "?" {
		t.Errorf("MiB(self, NoSuchField) = %q, want ?", m)
	}
	if Loadavg() == "?" {
		t.Error("Loadavg = ?")
	}
}
