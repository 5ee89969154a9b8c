package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Gathered sums the series of family name in g whose labels include want: the values of counters,
// gauges and untyped series, and the sample sums of histograms. count is the histograms' sample
// count, series the number of series that matched.
func Gathered(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) (sum float64, count uint64, series int) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			series++
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				sum += m.GetUntyped().GetValue()
			case m.GetHistogram() != nil:
				sum += m.GetHistogram().GetSampleSum()
				count += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return sum, count, series
}

// GatheredValue is Gathered's sum; the test fails when no series matched.
func GatheredValue(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	sum, _, series := Gathered(t, g, name, want)
	if series == 0 {
		t.Fatalf("no series %s%v", name, want)
	}
	return sum
}
