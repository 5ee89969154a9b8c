package naming

import (
	"fmt"
	"testing"
)

// BenchmarkBuild is the CPU cost of turning one pods/* request into PromQL.
func BenchmarkBuild(b *testing.B) {
	rules := compileFile(b, "../testdata/rules/examples.yaml")
	m := rules.Metrics[0]
	for _, n := range []int{1, 10, 100} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("web-%05d-abcde", i)
		}
		b.Run(fmt.Sprintf("names=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Build(Selection{Namespace: "shop", Names: names}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
