package pacompat

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/promql-adapter/promql-adapter/internal/testutil"
	"github.com/promql-adapter/promql-adapter/naming"
)

// TestConvert converts every case's config to the native format: the output is golden
// (testdata/pacompat/convert/*.golden) and, when any rule converted, a valid native rule file.
func TestConvert(t *testing.T) {
	for _, path := range casePaths(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			tc := loadCase(t, path)
			cfg, err := Parse([]byte(tc.Config))
			if err != nil {
				testutil.Golden(t, filepath.Join(testdata, "convert", name+".golden"), "== config error\n"+err.Error()+"\n", *update)
				return
			}
			out, err := Convert(cfg, tc.resolver())
			if err != nil {
				t.Fatal(err)
			}
			testutil.Golden(t, filepath.Join(testdata, "convert", name+".golden"), string(out), *update)
			if !strings.Contains(string(out), "\n- resource: ") {
				if !strings.Contains(string(out), "NOT CONVERTED") && len(cfg.Rules)+len(cfg.ExternalRules) > 0 {
					t.Error("no rule converted and none says why")
				}
				return
			}
			native, err := naming.ParseConfig(out)
			if err != nil {
				t.Fatalf("converted config does not parse: %v\n%s", err, out)
			}
			if _, err := naming.Compile(native, tc.resolver()); err != nil {
				t.Fatalf("converted config does not compile: %v\n%s", err, out)
			}
		})
	}
}

func TestConvertNameMapping(t *testing.T) {
	tests := []struct {
		in          NameMapping
		matches, as string
	}{
		{NameMapping{}, "", ""},
		{NameMapping{Matches: "^(.*)_total$", As: "${1}_per_second"}, "(.*)_total", "${1}_per_second"},
		{NameMapping{Matches: "^(.*)_total$"}, "(.*)_total", "$1"},
		{NameMapping{Matches: "^node_load$"}, "node_load", ""},
		{NameMapping{Matches: "_seconds_total$", As: "requests"}, ".*?(_seconds_total$).*", "requests"},
		{NameMapping{Matches: "(.*)_total", As: "$1_rate"}, ".*?((.*)_total).*", "${2}_rate"},
		{NameMapping{Matches: "total"}, ".*?(total).*", "${1}"},
	}
	for _, tc := range tests {
		m, as, err := nameMapping(tc.in)
		if err != nil || m != tc.matches || as != tc.as {
			t.Errorf("nameMapping(%+v) = %q %q %v; want %q %q", tc.in, m, as, err, tc.matches, tc.as)
		}
	}
}
