package server

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestAPIServiceFlags: the claim's flags are checked at start, each error naming the flag.
func TestAPIServiceFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"none", nil, ""},
		{"claim", []string{"--apiservice=v1beta1.external.metrics.k8s.io", "--apiservice-service=custom-metrics/promql-adapter:443"}, ""},
		{"secret only", []string{"--tls-secret=custom-metrics/promql-adapter-tls", "--apiservice-service=custom-metrics/promql-adapter:443"}, ""},
		{"claim without service", []string{"--apiservice=v1beta1.external.metrics.k8s.io"}, "need --apiservice-service"},
		{"bad name", []string{"--apiservice=external.metrics.k8s.io", "--apiservice-service=a/b:443"}, `--apiservice "external.metrics.k8s.io"`},
		{"bad service", []string{"--apiservice=v1beta1.external.metrics.k8s.io", "--apiservice-service=b:443"}, "--apiservice-service \"b:443\""},
		{"bad secret", []string{"--tls-secret=tls", "--apiservice-service=a/b:443"}, `--tls-secret "tls": want NAMESPACE/NAME`},
		{"secret and ca file", []string{"--tls-secret=a/tls", "--apiservice-service=a/b:443", "--apiservice-ca-file=/ca"}, "exclude each other"},
		{"secret and cert file", []string{"--tls-secret=a/tls", "--apiservice-service=a/b:443", "--tls-cert-file=/c", "--tls-private-key-file=/k"}, "--tls-cert-file"},
		{"service alone", []string{"--apiservice-service=a/b:443"}, "need --apiservice or --tls-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.validateAPIService()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("validateAPIService: %v, want %q", err, tc.want)
			}
		})
	}
}
