package wake

import (
	"testing"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
)

// TestRegistryExportsRuntimeAndProcess: promql-wake's /metrics registry reports its goroutines and
// resident memory beside its own series, so a soak can watch them.
func TestRegistryExportsRuntimeAndProcess(t *testing.T) {
	reg := NewRegistry()
	m := NewMetrics(reg)
	m.syncs.Inc()
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds", "promql_wake_syncs_total"} {
		if v, _, series := testutil.Gathered(t, reg, name, nil); series != 1 || v <= 0 {
			t.Errorf("%s: %d series, value %v; want one, > 0", name, series, v)
		}
	}
}
