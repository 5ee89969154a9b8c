package pavalues

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The value files of testdata/ → testdata/golden/NAME.values.yaml and NAME.warnings.txt.
func TestConvertGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("value files: %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Convert(data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata/golden", name+".values.yaml"), string(res.Values))
			golden(t, filepath.Join("testdata/golden", name+".warnings.txt"), strings.Join(res.Warnings, "\n")+"\n")
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update to rewrite):\n%s", path, got)
	}
}

// get reads a dotted key of converted values.
func get(t *testing.T, values []byte, key string) any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(values, &m); err != nil {
		t.Fatal(err)
	}
	v, ok := lookup(m, key)
	if !ok {
		return "<unset>"
	}
	return v
}

func TestConvert(t *testing.T) {
	cases := []struct {
		name, in string
		want     map[string]any // dotted key → value ("<unset>": absent)
		warn     []string       // substrings, each in some warning
	}{
		{name: "empty file: PA's defaults decide the rules, URL and APIs", in: ``,
			want: map[string]any{"prometheus.url": "http://prometheus.default.svc:9090", "apis.custom": true, "apis.external": false,
				"apis.resource": false, "rules.format": "prometheus-adapter", "replicas": "<unset>", "logLevel": "<unset>",
				"prometheus.networkPolicy.namespaceSelector": map[string]any{"kubernetes.io/metadata.name": "default"},
				"prometheus.networkPolicy.port":              float64(9090)}},
		{name: "url with port and path; port wins", in: "prometheus: {url: 'https://prom.mon.svc.cluster.local:9091/x', port: 443, path: /select/0/prometheus}\nrules: {default: true}",
			want: map[string]any{"prometheus.url": "https://prom.mon.svc.cluster.local:443/x/select/0/prometheus",
				"prometheus.networkPolicy.port": float64(443), "prometheus.networkPolicy.namespaceSelector": map[string]any{"kubernetes.io/metadata.name": "mon"}},
			warn: []string{"prometheus.url names port 9091 and prometheus.port is 443: prometheus.port wins"}},
		{name: "no port: the URL's own", in: "prometheus: {url: 'https://thanos.example.com', port: ''}",
			want: map[string]any{"prometheus.url": "https://thanos.example.com", "prometheus.networkPolicy.port": float64(443)},
			warn: []string{"thanos.example.com is not a Service name"}},
		{name: "deployment keys carried over", in: `
replicas: 3
logLevel: 1
listenPort: 7443
metricsRelistInterval: 30s
nameOverride: pa
fullnameOverride: adapter
affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: []}}
hostNetwork: {enabled: true}
env: [{name: A, value: b}]
extraVolumes: [{name: ca, configMap: {name: ca}}]
extraVolumeMounts: [{name: ca, mountPath: /ca}]
podLabels: {a: b}
podAnnotations: {c: d}
priorityClassName: high
image: {pullSecrets: [regcred]}
service: {port: 8443}
strategy: {type: Recreate}
startupProbe: {periodSeconds: 3, httpGet: {path: /healthz}}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: x}}}]
extraArguments: [--prometheus-verb=GET, --secure-port=1, --nope]
`, want: map[string]any{"replicas": float64(3), "logLevel": float64(1), "securePort": float64(7443), "seriesRelistInterval": "30s",
			"nameOverride": "pa", "fullnameOverride": "adapter", "podAntiAffinity": "none", "hostNetwork": true,
			"env": []any{map[string]any{"name": "A", "value": "b"}}, "extraVolumeMounts": []any{map[string]any{"name": "ca", "mountPath": "/ca"}},
			"podLabels": map[string]any{"a": "b"}, "podAnnotations": map[string]any{"c": "d"}, "priorityClassName": "high",
			"imagePullSecrets": []any{map[string]any{"name": "regcred"}}, "service.port": float64(8443),
			"updateStrategy": map[string]any{"type": "Recreate"}, "probes.startup": map[string]any{"periodSeconds": float64(3)},
			"topologySpreadConstraints": []any{map[string]any{"maxSkew": float64(1), "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}},
			"extraArgs":                 []any{"--prometheus-verb=GET"}},
			warn: []string{"startupProbe: only the timings", "labelSelector left out", "--secure-port=1 left out: promql-adapter's chart sets --secure-port",
				"--nope left out: promql-adapter has no flag --nope"}},
		{name: "extra arguments the chart has values for", in: "extraArguments: [--v=6, --metrics-max-age=5m, --metrics-relist-interval=30s]\nmetricsRelistInterval: 2m",
			want: map[string]any{"logLevel": float64(6), "seriesMaxAge": "5m", "seriesRelistInterval": "2m", "extraArgs": "<unset>"},
			warn: []string{"--v=6 carried over as logLevel: 6", "--metrics-relist-interval=30s left out: seriesRelistInterval is set already"}},
		{name: "image keys ignored with a warning", in: "image: {repository: r, tag: v1, pullPolicy: Always}",
			want: map[string]any{"image": "<unset>"},
			warn: []string{"image.repository (r) ignored", "image.tag (v1) ignored", "image.pullPolicy (Always) ignored"}},
		{name: "common labels and annotations", in: "customLabels: {a: b}\ncustomAnnotations: {c: d}",
			want: map[string]any{"commonLabels": map[string]any{"a": "b"}, "commonAnnotations": map[string]any{"c": "d"}}},
		{name: "unmapped keys named with the reason", in: "extraContainers: [{name: x}]\ndnsPolicy: ClusterFirstWithHostNet\nservice: {annotations: {x: z}}\nrevisionHistoryLimit: 3\nrbac: {useAuthReaderClusterRole: true}",
			warn: []string{`extraContainers ([{"name":"x"}]) not carried over: the chart runs no sidecars`, "dnsPolicy", "service.annotations",
				"revisionHistoryLimit (3) not carried over", "rbac.useAuthReaderClusterRole (true) not carried over"}},
		{name: "keys at PA's defaults listed once", in: "replicas: 1\nlogLevel: 4\nlivenessProbe: {httpGet: {path: /healthz, port: https, scheme: HTTPS}, initialDelaySeconds: 30, timeoutSeconds: 5}",
			want: map[string]any{"replicas": "<unset>", "logLevel": "<unset>", "probes": "<unset>"},
			warn: []string{"at prometheus-adapter's defaults, so promql-adapter's defaults apply: livenessProbe, logLevel, replicas"}},
		{name: "custom, external and resource rules: APIs follow them", in: `
rules:
  default: false
  custom: [{seriesQuery: 'a{namespace!=""}', resources: {template: <<.Resource>>}, metricsQuery: 'sum(<<.Series>>) by (<<.GroupBy>>)'}]
  external: [{seriesQuery: 'b', metricsQuery: 'sum(<<.Series>>)'}]
  resource: {cpu: {containerQuery: q, nodeQuery: q, resources: {template: <<.Resource>>}, containerLabel: container}, memory: {containerQuery: q, nodeQuery: q, resources: {template: <<.Resource>>}, containerLabel: container}, window: 1m}
`, want: map[string]any{"apis.custom": true, "apis.external": true, "apis.resource": true, "rules.config.rules": []any{map[string]any{
			"seriesQuery": `a{namespace!=""}`, "resources": map[string]any{"template": "<<.Resource>>"}, "metricsQuery": "sum(<<.Series>>) by (<<.GroupBy>>)"}},
			"rules.config.externalRules": []any{map[string]any{"seriesQuery": "b", "metricsQuery": "sum(<<.Series>>)"}}}},
		{name: "external rules only: no custom API", in: "rules: {default: false, external: [{seriesQuery: 'b', metricsQuery: 'sum(<<.Series>>)'}]}",
			want: map[string]any{"apis.custom": false, "apis.external": true, "rules.config.rules": "<unset>"}},
		{name: "default rules before custom ones", in: "rules: {custom: [{seriesQuery: 'a', metricsQuery: 'a'}]}",
			want: map[string]any{"apis.custom": true}},
		{name: "existing ConfigMap", in: "rules: {existing: my-rules}",
			want: map[string]any{"rules.existingConfigMap": "my-rules", "rules.key": "config.yaml", "rules.config": "<unset>", "apis.custom": true},
			warn: []string{`rules.existing: the ConfigMap "my-rules"`}},
		{name: "tls.enable: mode secret with the CA as caBundle", in: "tls: {enable: true, ca: CA, key: KEY, certificate: CERT}",
			want: map[string]any{"tls.mode": "secret", "tls.caBundle": "Q0EK"},
			warn: []string{"create it from tls.certificate and tls.key"}},
		{name: "PA's placeholder PEM without tls.enable is no warning", in: "tls: {enable: false, ca: '# the CA', key: '# the key', certificate: '# the cert'}",
			want: map[string]any{"tls": "<unset>"}},
		{name: "a key without tls.enable is named, its text is not", in: "tls: {key: '-----BEGIN PRIVATE KEY-----'}",
			warn: []string{"tls.key (PEM) not carried over: used only with tls.enable"}},
		{name: "cert-manager", in: "certManager: {enabled: true, certDuration: 2160h}",
			want: map[string]any{"tls.mode": "certManager", "tls.certManager.duration": "2160h"}},
		{name: "pod disruption budget", in: "podDisruptionBudget: {enabled: true, minAvailable: 2, maxUnavailable: 2}",
			want: map[string]any{"podDisruptionBudget.enabled": true, "podDisruptionBudget.minAvailable": float64(2)},
			warn: []string{"podDisruptionBudget.maxUnavailable (2) not carried over"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Convert([]byte(tc.in), Options{KnownFlag: func(n string) bool { return n != "nope" }})
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if got := get(t, res.Values, k); !equalJSON(got, want) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
			all := strings.Join(res.Warnings, "\n")
			for _, w := range tc.warn {
				if !strings.Contains(all, w) {
					t.Errorf("no warning contains %q; warnings:\n%s", w, all)
				}
			}
			if strings.Contains(all, "KEY") || strings.Contains(string(res.Values), "KEY") {
				t.Errorf("the private key appears in the output:\n%s\n%s", res.Values, all)
			}
		})
	}
}

func equalJSON(a, b any) bool {
	x, _ := yaml.Marshal(a)
	y, _ := yaml.Marshal(b)
	return string(x) == string(y)
}

func TestConvertErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"unknown keys named", "replicas: 1\nfoo: 1\nprometheus: {host: x}\nrules: {defaults: true}",
			"not keys of prometheus-adapter's chart: foo, prometheus.host, rules.defaults"},
		{"templated URL", "prometheus: {url: 'http://prometheus.{{ .Release.Namespace }}.svc'}", "prometheus.url: \"http://prometheus.{{ .Release.Namespace }}.svc\" is a Helm template"},
		{"URL without a scheme", "prometheus: {url: prometheus.monitoring.svc}", "prometheus.url: \"prometheus.monitoring.svc\" is not an http(s) URL"},
		{"bad port", "prometheus: {port: 99999}", "prometheus.port: 99999 is not a port"},
		{"no rules at all", "rules: {default: false}", "no rules: rules.default is false"},
		{"an existing ConfigMap and no API", "rules: {default: false, existing: cm}", "would register no API"},
		{"a custom rule PA would refuse", "rules: {custom: [{seriesQuery: a, metricsquery: b}]}", "rules[6]"},
		{"not YAML", "a: [", "prometheus-adapter values:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Convert([]byte(tc.in), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestConvertTLSNamesTheCertificate: the warning for tls.enable names the DNS names of PA's
// certificate, which kube-apiserver checks against this chart's Service.
func TestConvertTLSNamesTheCertificate(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"prometheus-adapter.monitoring.svc"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	in, _ := yaml.Marshal(map[string]any{"tls": map[string]any{"enable": true, "ca": cert, "certificate": cert, "key": "SECRET"}})
	res, err := Convert(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(res.Warnings, "\n")
	if !strings.Contains(all, "the certificate names prometheus-adapter.monitoring.svc") || strings.Contains(all+string(res.Values), "SECRET") {
		t.Errorf("warnings:\n%s\nvalues:\n%s", all, res.Values)
	}
	if got := get(t, res.Values, "tls.caBundle"); got != base64.StdEncoding.EncodeToString([]byte(cert)) {
		t.Errorf("caBundle %v", got)
	}
}
