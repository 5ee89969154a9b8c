package naming

import (
	"math"
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Quantity converts a Prometheus sample value to the quantity the HPA reads.
// Whole numbers stay whole; fractions become milli-units, or nano-units when
// milli would round a non-zero value to zero. NaN and ±Inf have no quantity: ok is false.
func Quantity(v float64) (q resource.Quantity, ok bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return resource.Quantity{}, false
	}
	const maxExact = 1 << 53 // beyond this a float64 holds no fraction and int64 milli overflows
	switch {
	case math.Abs(v) >= maxExact:
		q, err := resource.ParseQuantity(strconv.FormatFloat(v, 'f', 0, 64))
		return q, err == nil
	case v == math.Trunc(v):
		return *resource.NewQuantity(int64(v), resource.DecimalSI), true
	}
	milli := math.Round(v * 1e3)
	if milli == 0 {
		return *resource.NewScaledQuantity(int64(math.Round(v*1e9)), resource.Nano), true
	}
	if math.Abs(milli) >= maxExact {
		return *resource.NewQuantity(int64(math.Round(v)), resource.DecimalSI), true
	}
	return *resource.NewMilliQuantity(int64(milli), resource.DecimalSI), true
}
