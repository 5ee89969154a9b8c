package promrun

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"
)

func TestRenderConfig(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		want    promConfig
		wantErr string
	}{
		{
			name: "defaults",
			opts: Options{},
			want: promConfig{Global: globalConfig{ScrapeInterval: "1s", ScrapeTimeout: "1s", EvaluationInterval: "1s"}},
		},
		{
			name: "targets rules alerting",
			opts: Options{
				ScrapeInterval: 1500 * time.Millisecond,
				Targets: []Target{
					{Job: "a", Address: "127.0.0.1:1", Labels: map[string]string{"x": "y"}},
					{Job: "a", Address: "127.0.0.1:2"},
					{Address: "127.0.0.1:3", MetricsPath: "/m"},
				},
				RuleFiles:       []string{"/r.yml"},
				AlertmanagerURL: "http://127.0.0.1:9093/am",
			},
			want: promConfig{
				Global:    globalConfig{ScrapeInterval: "1500ms", ScrapeTimeout: "1500ms", EvaluationInterval: "1500ms"},
				RuleFiles: []string{"/r.yml"},
				Alerting: &alertingCfg{Alertmanagers: []alertmanagerCfg{{
					Scheme: "http", PathPrefix: "/am",
					StaticConfigs: []staticConfig{{Targets: []string{"127.0.0.1:9093"}}},
				}}},
				ScrapeConfigs: []scrapeConfig{
					{JobName: "a", HonorLabels: true, StaticConfigs: []staticConfig{
						{Targets: []string{"127.0.0.1:1"}, Labels: map[string]string{"x": "y"}},
						{Targets: []string{"127.0.0.1:2"}},
					}},
					{JobName: "job2", HonorLabels: true, MetricsPath: "/m", StaticConfigs: []staticConfig{
						{Targets: []string{"127.0.0.1:3"}},
					}},
				},
			},
		},
		{name: "empty address", opts: Options{Targets: []Target{{Job: "a"}}}, wantErr: "empty address"},
		{name: "conflicting paths", opts: Options{Targets: []Target{
			{Job: "a", Address: "h:1"}, {Job: "a", Address: "h:2", MetricsPath: "/x"},
		}}, wantErr: "different metrics paths"},
		{name: "bad alertmanager", opts: Options{AlertmanagerURL: "127.0.0.1:9093"}, wantErr: "want scheme://"},
		{name: "tiny interval", opts: Options{ScrapeInterval: time.Microsecond}, wantErr: "at least 1ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := RenderConfig(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("RenderConfig error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RenderConfig: %v", err)
			}
			var got promConfig
			if err := yaml.UnmarshalStrict(out, &got); err != nil {
				t.Fatalf("parse rendered config: %v\n%s", err, out)
			}
			gotY, _ := yaml.Marshal(got)
			wantY, _ := yaml.Marshal(tc.want)
			if string(gotY) != string(wantY) {
				t.Errorf("config mismatch\ngot:\n%s\nwant:\n%s", gotY, wantY)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+deb12u1)\n  build user: x\n", "2.42.0+ds", true},
		{"prometheus, version 3.5.0 (branch: HEAD, revision: abc)", "3.5.0", true},
		{"garbage", "", false},
		{"version ", "", false},
	}
	for _, tc := range tests {
		got, ok := parseVersion(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseVersion(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSampleCount(t *testing.T) {
	tests := []struct {
		name string
		v    model.Value
		want int
	}{
		{"nil", nil, 0},
		{"empty vector", model.Vector{}, 0},
		{"vector", model.Vector{{}, {}}, 2},
		{"matrix", model.Matrix{{Values: make([]model.SamplePair, 3)}, {Values: make([]model.SamplePair, 2)}}, 5},
		{"scalar", &model.Scalar{}, 1},
		{"string", &model.String{}, 1},
	}
	for _, tc := range tests {
		if got := sampleCount(tc.v); got != tc.want {
			t.Errorf("%s: sampleCount = %d, want %d", tc.name, got, tc.want)
		}
	}
}
