package fakeexporter

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestSyntheticServesItsLayout(t *testing.T) {
	s := Synthetic{Namespaces: 2, Pods: 3, Paths: 2, Queues: 2}
	addr, stop, err := StartSynthetic(s)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		n += len(f.Metric)
	}
	if n != s.Series() || n != 2*3*3+2 {
		t.Errorf("%d series, want %d", n, s.Series())
	}
	if !strings.Contains(string(body), `bench_gauge{namespace="bench-1",pod="web-2"} 0.02`) {
		t.Errorf("gauge of bench-1/web-2 missing:\n%s", body)
	}
	if got := SyntheticFor(1_000_000); got.Series() != 1_000_010 || got.Pods != 1000 {
		t.Errorf("1M layout %+v serves %d", got, got.Series())
	}
}
