package inspect

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/promql-adapter/promql-adapter/naming"
	"github.com/promql-adapter/promql-adapter/naming/pacompat"
)

// paStub lists one series per seriesQuery given and answers every query as stubQuerier does.
type paStub struct {
	stubQuerier
	series map[string]naming.SeriesLabels
}

func (s paStub) Series(_ context.Context, selector string, _ time.Time) ([]naming.SeriesLabels, error) {
	if sl, ok := s.series[selector]; ok {
		sl.Query = selector
		return []naming.SeriesLabels{sl}, nil
	}
	return nil, nil
}

// TestCheckUnusableRules: check marks each rule the server loads as unusable BROKEN with the
// reason, whether its metrics are listed or it names none, and each unusable part of resourceRules;
// the usable rule is ok.
func TestCheckUnusableRules(t *testing.T) {
	rules, _, err := pacompat.LoadLenient([]byte(`rules:
- seriesQuery: 'elu{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
- seriesQuery: 'depth{namespace!="",pod!=""}'
  resources: {overrides: {pod: {resource: pod}}}
- seriesQuery: 'errors{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: '('}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
resourceRules:
  cpu: {containerQuery: 'sum by (<<.GroupBy>>) (cpu{<<.LabelMatchers>>})', nodeQuery: 'sum by (<<.GroupBy>>) (ncpu{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}
  memory: {containerQuery: 'sum by (<<.GroupBy>>) (mem{<<.LabelMatchers>>})', containerLabel: container, resources: {template: <<.Resource>>}}
`), naming.BuiltinResources())
	if err != nil {
		t.Fatal(err)
	}
	q := paStub{series: map[string]naming.SeriesLabels{
		`elu{namespace!="",pod!=""}`:   {Name: "elu", Labels: []string{"namespace", "pod"}},
		`depth{namespace!="",pod!=""}`: {Name: "depth", Labels: []string{"pod"}},
	}}
	r, err := Check(context.Background(), rules, q, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(r.Rules))
	for i, rr := range r.Rules {
		got[i] = fmt.Sprintf("%s broken=%v", rr.Rule, rr.Broken)
	}
	if strings.Join(got, "; ") != "rules[0] broken=false; rules[1] broken=true; rules[2] broken=true; resourceRules.memory.nodeQuery broken=true" {
		t.Errorf("rules: %s\n%s", strings.Join(got, "; "), table.String())
	}
	for _, w := range []string{
		"BROKEN: unusable rule: rules[1]", "metricsQuery: required",
		"BROKEN: unusable rule: rules[2]", "name.matches", "(it serves no metric)",
		"BROKEN: unusable rule: resourceRules: memory.nodeQuery: required",
		"4 rules, 3 broken",
	} {
		if !strings.Contains(table.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, table.String())
		}
	}
}
