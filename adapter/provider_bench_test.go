package adapter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/promql-adapter/promql-adapter/naming"
)

// vectorQuerier answers every query with the same vector, so a benchmark measures the
// adapter's own work: selecting objects, building PromQL, converting and filtering samples.
type vectorQuerier model.Vector

func (v vectorQuerier) Query(context.Context, string) (model.Vector, error) {
	return model.Vector(v), nil
}
func (vectorQuerier) SeriesNames(context.Context, string, time.Time) ([]string, error) {
	return nil, nil
}
func (vectorQuerier) Series(context.Context, string, time.Time) ([]naming.SeriesLabels, error) {
	return nil, nil
}

// BenchmarkPodsBySelector is the adapter's own cost of one pods/* request over 1,000 pods, with
// object names from the informer cache and Prometheus's time excluded: all pods selected (namespace query, result filtered by name) and
// one pod in ten selected (a name=~ matcher).
func BenchmarkPodsBySelector(b *testing.B) {
	const n = 1000
	var pods []runtime.Object
	vec := make(model.Vector, 0, n)
	now := model.Now()
	for i := range n {
		pod := fmt.Sprintf("web-%04d-7d9f8b6c5d-x%04d", i, i)
		pods = append(pods, &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: pod, Labels: map[string]string{"app": "web", "shard": fmt.Sprint(i % 10)}},
		})
		vec = append(vec, &model.Sample{
			Metric:    model.Metric{"namespace": "shop", "pod": model.LabelValue(pod)},
			Value:     model.SampleValue(float64(i%100) / 100),
			Timestamp: now,
		})
	}
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs := NewInformerObjects(ctx, metadatafake.NewSimpleMetadataClient(scheme, pods...), 0)
	p := NewProvider(Options{Querier: vectorQuerier(vec), Objects: objs}, testRules(b))
	for _, tc := range []struct{ name, selector string }{
		{"all-1000", "app=web"},
		{"tenth-100", "app=web,shard=3"},
	} {
		selector, err := labels.Parse(tc.selector)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				list, err := p.GetMetricBySelector(context.Background(), "shop", selector, podsInfo, labels.Everything())
				if err != nil || len(list.Items) == 0 {
					b.Fatalf("%d items, %v", len(list.Items), err)
				}
			}
		})
	}
}
