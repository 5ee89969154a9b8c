package naming

import (
	"math"
	"testing"
)

func TestQuantity(t *testing.T) {
	tests := []struct {
		in    float64
		want  string
		milli int64
		ok    bool
	}{
		{0, "0", 0, true},
		{3, "3", 3000, true},
		{-2, "-2", -2000, true},
		{0.5, "500m", 500, true},
		{0.25, "250m", 250, true},
		{1.25, "1250m", 1250, true},
		{0.1 + 0.2, "300m", 300, true},
		{0.0004, "400u", 1, true}, // too small for milli: kept, not rounded to zero
		{123456.789, "123456789m", 123456789, true},
		{1e20, "100E", -1, true}, // -1: MilliValue overflows; the string is exact,
		{math.NaN(), "", 0, false},
		{math.Inf(1), "", 0, false},
		{math.Inf(-1), "", 0, false},
	}
	for _, tc := range tests {
		q, ok := Quantity(tc.in)
		if ok != tc.ok {
			t.Errorf("Quantity(%v) ok=%v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if q.String() != tc.want || (tc.milli != -1 && q.MilliValue() != tc.milli) {
			t.Errorf("Quantity(%v) = %s (milli %d), want %s (milli %d)", tc.in, q.String(), q.MilliValue(), tc.want, tc.milli)
		}
	}
}
