package loadsim_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/internal/loadsim"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want loadsim.Target
		err  string
	}{
		{in: "default/web/web-svc/100/app=web", want: loadsim.Target{Namespace: "default", Deployment: "web", Service: "web-svc",
			Capacity: 100, MatchLabels: map[string]string{"app": "web"}}},
		{in: "demo/api/api/12.5/app.kubernetes.io/name=api,tier=backend", want: loadsim.Target{Namespace: "demo", Deployment: "api",
			Service: "api", Capacity: 12.5, MatchLabels: map[string]string{"app.kubernetes.io/name": "api", "tier": "backend"}}},
		{in: "default/web/web/100", err: "want namespace/deployment/service/capacity/selector"},
		{in: "default//web/100/app=web", err: "empty deployment"},
		{in: "default/web/web/fast/app=web", err: "capacity"},
		{in: "default/web/web/0/app=web", err: "capacity 0"},
		{in: "default/web/web/-1/app=web", err: "capacity -1"},
		{in: "default/web/web/10/app", err: "selector"},
		{in: "default/web/web/10/app=web,", err: "empty term"},
		{in: "default/web/web/10/app=a,app=b", err: "given twice"},
		{in: "default/web/web/10/a b=c", err: "selector"},
	} {
		got, err := loadsim.ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTarget(%q): error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tc.in, err)
			continue
		}
		if got.Namespace != tc.want.Namespace || got.Deployment != tc.want.Deployment || got.Service != tc.want.Service ||
			got.Capacity != tc.want.Capacity || !maps.Equal(got.MatchLabels, tc.want.MatchLabels) || got.Load != 0 {
			t.Errorf("ParseTarget(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseLoad(t *testing.T) {
	for _, tc := range []struct {
		in       string
		ns, dep  string
		rps      float64
		errMatch string
	}{
		{in: "default/web=150", ns: "default", dep: "web", rps: 150},
		{in: "demo/api=0.5", ns: "demo", dep: "api", rps: 0.5},
		{in: "demo/api= 7 ", ns: "demo", dep: "api", rps: 7},
		{in: "demo/api", errMatch: "want namespace/deployment=rps"},
		{in: "api=3", errMatch: "want namespace/deployment=rps"},
		{in: "a/b/c=3", errMatch: "want namespace/deployment=rps"},
		{in: "/b=3", errMatch: "want namespace/deployment=rps"},
		{in: "a/b=x", errMatch: "invalid syntax"},
		{in: "a/b=-2", errMatch: "invalid value"},
		{in: "a/b=NaN", errMatch: "invalid value"},
	} {
		ns, dep, rps, err := loadsim.ParseLoad(tc.in)
		if tc.errMatch != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
				t.Errorf("ParseLoad(%q): error %v, want one containing %q", tc.in, err, tc.errMatch)
			}
			continue
		}
		if err != nil || ns != tc.ns || dep != tc.dep || rps != tc.rps {
			t.Errorf("ParseLoad(%q) = %q %q %v %v, want %q %q %v", tc.in, ns, dep, rps, err, tc.ns, tc.dep, tc.rps)
		}
	}
}
