package server

import (
	"strings"
	"testing"
)

func TestForwardFlagsValidate(t *testing.T) {
	for _, c := range []struct {
		external, custom, apis []string
		err                    string
	}{
		{external: []string{"https://keda-operator-metrics-apiserver.keda:443,ca-file=/ca"}},
		{custom: []string{"https://prometheus-adapter.monitoring:443,cluster-ca"}, apis: []string{"custom"}},
		{external: []string{"keda:443"}, err: "--forward-external \"keda:443\": the first field must be the upstream's URL"},
		{custom: []string{"https://pa,auth=cert"}, err: "--forward-custom"},
		{external: []string{"https://keda"}, apis: []string{"custom"}, err: "--forward-external needs external in --apis"},
		{custom: []string{"https://pa"}, apis: []string{"external"}, err: "--forward-custom needs custom in --apis"},
	} {
		o := NewOptions()
		o.RulesFile, o.TrustLoopback = "rules.yaml", true
		o.ForwardExternal, o.ForwardCustom, o.APIs = c.external, c.custom, c.apis
		err := o.Validate()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v %v %v: %v, want %q", c.external, c.custom, c.apis, err, c.err)
		}
	}
}
