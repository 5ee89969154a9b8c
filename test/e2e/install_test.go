//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// kubectl runs kubectl as cluster admin.
func kubectl(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", st.Cluster.AdminKubeconfig()}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// helmBin is the Helm binary make builds (PROMQL_ADAPTER_HELM).
func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("PROMQL_ADAPTER_HELM")
	if h == "" {
		t.Fatal("PROMQL_ADAPTER_HELM is not set: run make helm (make e2e sets it)")
	}
	return h
}

// TestChartServerSideDryRun renders charts/promql-adapter with the three golden value sets and sends
// every object through kube-apiserver's server-side dry run with strict field validation; the
// CRD-backed objects (cert-manager, ServiceMonitor, PrometheusRule) are checked against minimal CRDs that hold only
// the fields the real ones have and the chart writes.
func TestChartServerSideDryRun(t *testing.T) {
	if _, err := kubectl(nil, "apply", "--server-side", "-f", filepath.Join(root, "testdata/chart/crds/minimal-crds.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io", "crd/servicemonitors.monitoring.coreos.com",
		"crd/prometheusrules.monitoring.coreos.com"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"defaults", "pa-custom-resource", "certmanager-wake"} {
		t.Run(v, func(t *testing.T) {
			out, err := exec.Command(helmBin(t), "template", "promql-adapter", filepath.Join(root, "charts/promql-adapter"),
				"--namespace", "custom-metrics", "-f", filepath.Join(root, "testdata/chart", v+".yaml")).Output()
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			got, err := kubectl(out, "apply", "--dry-run=server", "--validate=strict", "-f", "-", "-o", "name")
			if err != nil {
				t.Fatal(err)
			}
			names := strings.Fields(got)
			want := strings.Count(string(out), "\nkind: ") + map[bool]int{true: 1}[strings.HasPrefix(string(out), "kind: ")]
			if len(names) != want || want < 15 {
				t.Errorf("%d of %d rendered objects pass the dry run:\n%s", len(names), want, got)
			}
			t.Logf("%s: %d objects pass the server-side dry run", v, len(names))
		})
	}
}

// TestE2EPrometheusAdapterArgs starts the adapter binary with the arguments of prometheus-adapter's
// Deployment (its chart's and its manifests', /adapter first) and its config file, plus only what a
// process outside the cluster needs instead of in-cluster config; it must serve the metrics.
func TestE2EPrometheusAdapterArgs(t *testing.T) {
	ctx := context.Background()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := st.ServiceAccountKubeconfig(ctx, "custom-metrics", "promql-adapter")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"/adapter", // the chart's first argument: prometheus-adapter's binary
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + t.TempDir(),
		"--prometheus-url=" + st.Prom.URL() + "/",
		"--metrics-relist-interval=1m",
		"--v=4",
		"--config=" + filepath.Join(root, "testdata/rules/prometheus-adapter.yaml"),
		"--tls-cipher-suites=TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"--prometheus-verb=GET", // honoured: every query by GET, as prometheus-adapter does
		"--metrics-max-age=5m",
		"--disable-http2", // OpenShift's manifests set it
		// Out of the cluster: what in-cluster config gives a Pod.
		"--bind-address=127.0.0.1",
		"--lister-kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
	}
	logPath := filepath.Join(t.TempDir(), "adapter.log")
	startAdapterProc(t, filepath.Join(st.WorkDir(), "promql-adapter"), args, logPath, 10*time.Second, 1<<20)

	// The admin's client certificate, sent to the adapter, which delegates to kube-apiserver.
	cfg := st.Cluster.AdminConfig()
	cfg.Host = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.Insecure = nil, "", true // --cert-dir's self-signed certificate
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the adapter serves prometheus-adapter's metrics", func() (bool, string) {
		resp, err := client.Get(cfg.Host + "/apis/custom.metrics.k8s.io/v1beta2")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(b.String(), "pods/elu_utilization_pa"), fmt.Sprint(resp.StatusCode, " ", b.String())
	})
	log, _ := os.ReadFile(logPath)
	for s, want := range map[string]int{"ignoring prometheus-adapter's binary path": 1, "has no effect": 0} {
		if strings.Count(string(log), s) != want {
			t.Errorf("log line %q appears %d times, want %d", s, strings.Count(string(log), s), want)
		}
	}
	if resp, err := client.Get(cfg.Host + "/apis/custom.metrics.k8s.io/v1beta2"); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.ProtoMajor != 1 {
			t.Errorf("with --disable-http2 the adapter answered over %s, want HTTP/1.1", resp.Proto)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
