package server

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	discoveryfake "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/dynamicmapper"

	"github.com/promql-adapter/promql-adapter/adapter"
)

const (
	rulesPods    = "metrics:\n- name: a\n  resource: pods\n  query: sum by (pod) (x)\n"
	rulesWidgets = rulesPods + "- name: w\n  resource: widgets.example.com\n  query: sum by (widget) (y)\n"
)

// TestRuleForCRDInstalledAfterStart checks that a rule naming a CRD the cluster does not serve yet
// is rejected, then served once the CRD is installed, without the file changing or a restart.
func TestRuleForCRDInstalledAfterStart(t *testing.T) {
	dc := &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}}
	dc.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "pods", SingularName: "pod", Namespaced: true, Kind: "Pod", Verbs: []string{"get", "list", "watch"}},
	}}}
	mapper, err := dynamicmapper.NewRESTMapper(dc, 0) // never run: only a miss rereads discovery
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, path, rulesPods)
	r := newReloadRig(path)
	r.file.resolver = &adapter.RefreshingResolver{Resolver: adapter.MapperResolver{Mapper: mapper}, Refresh: mapper.RegenerateMappings}
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	r.file.now = func() time.Time { return now }
	if _, err := r.file.load(); err != nil || r.last() != "a" {
		t.Fatalf("first load: %v, applied %q", err, r.last())
	}

	write(t, path, rulesWidgets)
	if _, err := r.file.load(); err == nil || !strings.Contains(err.Error(), "widgets.example.com") {
		t.Fatalf("a rule for a resource the cluster does not serve: %v", err)
	}
	if _, err := r.file.load(); err == nil { // checked again, still missing
		t.Fatal("accepted before the CRD exists")
	}

	dc.Resources = append(dc.Resources, &metav1.APIResourceList{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
		{Name: "widgets", SingularName: "widget", Namespaced: true, Kind: "Widget", Verbs: []string{"get", "list", "watch"}},
	}})
	now = now.Add(DefaultRetryRejected) // the same bytes are compiled again only after this
	rules, err := r.file.load()         // the same bytes as the rejected file
	if err != nil || rules == nil || r.last() != "a,w" {
		t.Fatalf("after the CRD was installed: %v, applied %q", err, r.last())
	}
	if rules.Metrics[1].Resource.GroupResource.String() != "widgets.example.com" || rules.Metrics[1].NameLabel != "widget" {
		t.Errorf("resolved %+v", rules.Metrics[1].Resource)
	}
	if rules, err := r.file.load(); rules != nil || err != nil || r.count() != 2 {
		t.Errorf("a served file was applied again: %v %v %d", rules, err, r.count())
	}
}

// TestRefreshingResolverRateLimited checks that misses reread discovery at most once per MinInterval.
func TestRefreshingResolverRateLimited(t *testing.T) {
	dc := &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}}
	mapper, err := dynamicmapper.NewRESTMapper(dc, 0)
	if err != nil {
		t.Fatal(err)
	}
	refreshes := 0
	res := &adapter.RefreshingResolver{Resolver: adapter.MapperResolver{Mapper: mapper}, MinInterval: 1 << 62,
		Refresh: func() error { refreshes++; return mapper.RegenerateMappings() }}
	for range 5 {
		if _, err := res.Resolve("widgets.example.com"); err == nil {
			t.Fatal("resolved a resource nobody serves")
		}
	}
	if refreshes != 1 {
		t.Errorf("%d discovery rereads for 5 misses within MinInterval; want 1", refreshes)
	}
}
