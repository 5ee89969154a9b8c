package adapter

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

func TestNameObjects(t *testing.T) {
	const budget, maxRegex = 100, 1000
	tests := []struct {
		name                   string
		bytes, selected, total int
		lastWide               int
		known, want            bool
	}{
		{"short alternation: named, whatever the namespace holds", 80, 10, 10, 10, true, true},
		{"short alternation, no measurement", 80, 10, 10, 0, false, true},
		{"past the regex cap: never named", 1001, 100, 1000, 100000, true, false},
		{"past the budget, the namespace's series are mostly the selected objects", 500, 50, 60, 55, true, false},
		{"past the budget, the namespace holds many more series", 500, 50, 60, 1000, true, true},
		{"past the budget, no measurement, most of the namespace: measure", 500, 50, 60, 0, false, false},
		{"past the budget, no measurement, a minority of the namespace", 500, 50, 1000, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NameObjects(tc.bytes, tc.selected, tc.total, budget, maxRegex, tc.lastWide, tc.known); got != tc.want {
				t.Errorf("NameObjects = %v, want %v", got, tc.want)
			}
		})
	}
}

// Past the name budget the first request over most of a namespace queries the whole namespace; when
// that answer holds many more series than pods selected (here 40 series of pods long gone), the
// next request names the pods instead.
func TestNameObjectsLearnsFromNamespaceAnswer(t *testing.T) {
	shop := fakeObjects{"shop": {"web-1": {"app": "web"}, "web-2": {"app": "web"}, "web-3": {"app": "web"}}}
	f := newFakeProm(t, func(q string) ([]sample, error) {
		if strings.Contains(q, "pod=~") {
			return []sample{{map[string]string{"pod": "web-1"}, 1}}, nil
		}
		var out []sample
		for i := range 40 {
			out = append(out, sample{map[string]string{"pod": fmt.Sprintf("gone-%d", i)}, 1})
		}
		return append(out, sample{map[string]string{"pod": "web-1"}, 1}), nil
	})
	p, _ := newTestProvider(t, f, shop, time.Second)
	p.opts.NameBudget = 8
	var queries []string
	for range 2 {
		list, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(), podsInfo, labels.Everything())
		if err != nil || len(list.Items) != 1 || list.Items[0].DescribedObject.Name != "web-1" {
			t.Fatalf("items %+v, err %v", list, err)
		}
		queries = append(queries, f.lastQuery())
	}
	want := []string{
		`avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop"}[1m]))`,
		`avg by (namespace, pod) (avg_over_time(elu_utilization{namespace="shop",pod=~"web-1|web-2|web-3"}[1m]))`,
	}
	if fmt.Sprint(queries) != fmt.Sprint(want) {
		t.Errorf("queries\n got %q\nwant %q", queries, want)
	}
	// The regex cap still holds: past it, never named.
	p.opts.MaxRegexBytes = 8
	if _, err := p.GetMetricBySelector(context.Background(), "shop", labels.Everything(), podsInfo, labels.Everything()); err != nil {
		t.Fatal(err)
	}
	if got := f.lastQuery(); got != want[0] {
		t.Errorf("past the regex cap: %s", got)
	}
}
