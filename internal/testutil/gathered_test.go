package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestGathered(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"a", "b"})
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h_seconds", Help: "h"}, []string{"a"})
	reg.MustRegister(c, h)
	c.WithLabelValues("x", "1").Add(2)
	c.WithLabelValues("x", "2").Add(3)
	c.WithLabelValues("y", "1").Add(5)
	h.WithLabelValues("x").Observe(0.5)
	h.WithLabelValues("x").Observe(1)
	tests := []struct {
		name   string
		want   map[string]string
		sum    float64
		count  uint64
		series int
	}{
		{"c_total", map[string]string{"a": "x"}, 5, 0, 2},
		{"c_total", map[string]string{"a": "x", "b": "2"}, 3, 0, 1},
		{"c_total", nil, 10, 0, 3},
		{"c_total", map[string]string{"a": "z"}, 0, 0, 0},
		{"h_seconds", map[string]string{"a": "x"}, 1.5, 2, 1},
		{"missing", nil, 0, 0, 0},
	}
	for _, tc := range tests {
		sum, count, series := Gathered(t, reg, tc.name, tc.want)
		if sum != tc.sum || count != tc.count || series != tc.series {
			t.Errorf("%s%v: %v %d %d, want %v %d %d", tc.name, tc.want, sum, count, series, tc.sum, tc.count, tc.series)
		}
	}
	if v := GatheredValue(t, reg, "c_total", map[string]string{"a": "y"}); v != 5 {
		t.Errorf("GatheredValue %v", v)
	}
}
