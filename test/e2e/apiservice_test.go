//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"

	"github.com/promql-adapter/promql-adapter/internal/localcluster"
)

const externalAPIService = "v1beta1.external.metrics.k8s.io"

// kubectlIn runs kubectl against a kubeconfig with stdin; it returns stdout and the exit error.
func kubectlIn(kubeconfig string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

// saKubeconfig writes a kubeconfig with a token of a ServiceAccount of cluster c.
func saKubeconfig(ctx context.Context, t *testing.T, c *localcluster.Cluster, kube kubernetes.Interface, namespace, sa string) string {
	t.Helper()
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.APIServerURL(), CertificateAuthorityData: c.CACertPEM()}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa}
	cfg.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// ownCluster starts a control plane of the test's own (opts with the stack's binaries and the test's log), stopped
// at cleanup, and returns it with its admin's clients for the core API and the aggregator's APIServices.
func ownCluster(ctx context.Context, t *testing.T, opts localcluster.Options) (*localcluster.Cluster, *kubernetes.Clientset, *aggregator.Clientset) {
	t.Helper()
	opts.BinDir, opts.Logf = binDir, t.Logf
	cl, err := localcluster.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Stop(); err != nil {
			t.Error(err)
		}
	})
	kube, err := kubernetes.NewForConfig(cl.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	agg, err := aggregator.NewForConfig(cl.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	return cl, kube, agg
}

// TestE2EAPIServiceBesideKEDA installs two Helm releases into a control plane of its own: a KEDA release (the
// stand-in chart testdata/keda-chart, which templates v1beta1.external.metrics.k8s.io as KEDA's chart does) and
// promql-adapter's chart with apiService.ownedElsewhere naming that APIService and tls.mode controller (the
// default). Both install without a Helm ownership conflict. The adapter runs as the chart's Deployment would (its
// arguments, its ServiceAccount's RBAC, as a process on 127.0.0.1 behind an ExternalName Service): its leader makes
// the CA and certificate in the shared Secret and claims the three APIServices, which kube-apiserver then serves
// through it. `helm upgrade` of the KEDA release points the APIService back at KEDA, and a KEDA-operator-like
// caBundle rotation rewrites its CA: each time the adapter holds it again within 10 s (measured from the moment
// the watch sees the rewrite). Then `helm template` twice + `kubectl apply --server-side` of our release shows no
// diff (GitOps). KEDA's own processes are not run: this is the APIService contest alone.
func TestE2EAPIServiceBesideKEDA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cl, kube, agg := ownCluster(ctx, t, localcluster.Options{WorkDir: filepath.Join(st.WorkDir(), "apiservice-cluster")})
	kc := cl.AdminKubeconfig()

	// The KEDA release, then ours beside it.
	kedaChart := filepath.Join(root, "testdata/keda-chart")
	if _, err := runHelm(t, kc, "install", "keda", kedaChart, "--namespace", "keda", "--create-namespace"); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	values := besideKEDAValues(t, port)
	chart := filepath.Join(root, "charts/promql-adapter")
	if out, err := runHelm(t, kc, "install", "promql-adapter", chart, "--namespace", "custom-metrics", "--create-namespace", "-f", values); err != nil {
		t.Fatalf("our release beside KEDA's: %v", err)
	} else if strings.Contains(out, "conflict") {
		t.Fatalf("helm install: %s", out)
	}
	ext, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ext.Annotations["meta.helm.sh/release-name"] != "keda" || ext.Spec.Service.Namespace != "keda" {
		t.Fatalf("after both installs the external APIService should still be KEDA's release's: %v %+v", ext.Annotations, ext.Spec.Service)
	}

	// The adapter as the chart's Deployment runs it.
	runBesideAdapter(ctx, t, cl, kube, "apiservice-adapter.log")

	// The leader made the Secret and claimed every APIService: our Service, the Secret's CA, and kube-apiserver
	// reaches the adapter through them (Available, and a discovery GET of the external API).
	names := []string{"v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", externalAPIService}
	var ca []byte
	eventually(t, 90*time.Second, "the Secret of tls.mode controller", func() (bool, string) {
		s, err := kube.CoreV1().Secrets("custom-metrics").Get(ctx, "promql-adapter-tls", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ca = s.Data["ca.crt"]
		return len(ca) > 0 && len(s.Data["tls.crt"]) > 0, fmt.Sprintf("keys %d", len(s.Data))
	})
	held := func(a *apiregv1.APIService) bool {
		return a.Spec.Service != nil && a.Spec.Service.Namespace == "custom-metrics" && a.Spec.Service.Name == "promql-adapter" &&
			bytes.Equal(a.Spec.CABundle, ca)
	}
	eventually(t, 60*time.Second, "every APIService held and Available", func() (bool, string) {
		var state []string
		for _, n := range names {
			a, err := agg.ApiregistrationV1().APIServices().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			avail := ""
			for _, c := range a.Status.Conditions {
				if c.Type == apiregv1.Available {
					avail = string(c.Status) + " " + c.Message
				}
			}
			if !held(a) || !strings.HasPrefix(avail, "True") {
				state = append(state, fmt.Sprintf("%s: service %+v caBundle ours %v available %s", n, a.Spec.Service, bytes.Equal(a.Spec.CABundle, ca), avail))
			}
		}
		return len(state) == 0, strings.Join(state, "; ")
	})
	// KEDA's release was applied server-side (Helm 4's default), and the adapter keeps no field ownership: so the
	// upgrades below cannot meet a conflict with it.
	eventually(t, 10*time.Second, "no managedFields entry of promql-adapter, one applied by Helm", func() (bool, string) {
		a, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		var managers []string
		applied, ours := false, false
		for _, m := range a.ManagedFields {
			managers = append(managers, m.Manager+"/"+string(m.Operation))
			applied = applied || m.Operation == metav1.ManagedFieldsOperationApply
			ours = ours || m.Manager == "promql-adapter"
		}
		return applied && !ours, strings.Join(managers, ", ")
	})
	// Available is set by the aggregator's availability controller; its proxy picks the new service up on its
	// own watch, a moment later on a loaded machine.
	eventually(t, 15*time.Second, "external metrics through the claimed APIService", func() (bool, string) {
		if _, err := kube.Discovery().RESTClient().Get().AbsPath("/apis/external.metrics.k8s.io/v1beta1").DoRaw(ctx); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	ev, err := kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", externalAPIService).String()})
	if err != nil || len(ev.Items) == 0 || ev.Items[0].Reason != "Claimed" {
		t.Fatalf("no Claimed Event on %s: %v %+v", externalAPIService, err, ev)
	}
	t.Logf("Event on %s: %s %s", externalAPIService, ev.Items[0].Reason, ev.Items[0].Message)
	readyz := adapterReadyz(t, port)
	if !strings.Contains(readyz, "[+]apiservices ok") {
		t.Errorf("/readyz?verbose:\n%s", readyz)
	}

	// Rewrites: KEDA's chart upgrade (its Service) and a KEDA-operator-like CA rotation (its caBundle).
	retake := func(what string, rewrite func() error) time.Duration {
		t.Helper()
		w, err := agg.ApiregistrationV1().APIServices().Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", externalAPIService).String()})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		// Events are stamped as they arrive, while the rewrite (e.g. helm upgrade) still runs.
		type seen struct {
			at   time.Time
			held bool
			desc string
		}
		events := make(chan seen, 1000)
		go func() {
			for e := range w.ResultChan() {
				if a, ok := e.Object.(*apiregv1.APIService); ok {
					events <- seen{time.Now(), held(a), fmt.Sprintf("service %+v, caBundle ours %v", a.Spec.Service, bytes.Equal(a.Spec.CABundle, ca))}
				}
			}
			close(events)
		}()
		if err := rewrite(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var lost time.Time
		timeout := time.After(30 * time.Second)
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("%s: the watch ended", what)
				}
				if !e.held && lost.IsZero() {
					lost = e.at
					t.Logf("%s: the APIService now says %s", what, e.desc)
				}
				if e.held && !lost.IsZero() {
					return e.at.Sub(lost)
				}
			case <-timeout:
				t.Fatalf("%s: not held again within 30 s (lost at %v)", what, lost)
			}
		}
	}
	upgrade := retake("helm upgrade of the KEDA release", func() error {
		_, err := runHelm(t, kc, "upgrade", "keda", kedaChart, "--namespace", "keda", "--set", "revision=2")
		return err
	})
	rotate := retake("a caBundle rotation by KEDA's operator", func() error {
		a, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
		if err != nil {
			return err
		}
		a.Spec.CABundle = cl.CACertPEM() // another CA
		_, err = agg.ApiregistrationV1().APIServices().Update(ctx, a, metav1.UpdateOptions{FieldManager: "keda-operator"})
		return err
	})
	t.Logf("held again %s after KEDA's helm upgrade, %s after the caBundle rotation", upgrade.Round(time.Millisecond), rotate.Round(time.Millisecond))
	for what, d := range map[string]time.Duration{"helm upgrade": upgrade, "caBundle rotation": rotate} {
		if d > 10*time.Second {
			t.Errorf("%s: held again only after %s, want within 10 s", what, d)
		}
	}
	// A second KEDA upgrade meets no server-side apply conflict with us (we keep no field ownership).
	if _, err := runHelm(t, kc, "upgrade", "keda", kedaChart, "--namespace", "keda", "--set", "revision=3"); err != nil {
		t.Errorf("a second KEDA upgrade: %v", err)
	}

	// GitOps: `helm template` twice gives the same objects, and a server-side apply of the second shows no diff.
	render := func() []byte {
		out, err := exec.Command(helmBin(t), "template", "promql-adapter", chart, "--namespace", "custom-metrics", "-f", values).Output()
		if err != nil {
			t.Fatalf("helm template: %v", err)
		}
		return out
	}
	first, second := render(), render()
	if !bytes.Equal(first, second) {
		t.Fatal("helm template gives different objects twice")
	}
	if _, err := kubectlIn(kc, first, "apply", "--server-side", "--field-manager=gitops", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // let the controller act on whatever the apply changed
	if out, err := kubectlIn(kc, second, "diff", "--server-side", "--field-manager=gitops", "-f", "-"); err != nil || out != "" {
		t.Fatalf("kubectl diff --server-side after apply: %v\n%s", err, out)
	}
	for _, n := range names {
		a, err := agg.ApiregistrationV1().APIServices().Get(ctx, n, metav1.GetOptions{})
		if err != nil || !held(a) {
			t.Errorf("%s after the GitOps apply: %v held %v", n, err, err == nil && held(a))
		}
	}

	// The other order: KEDA's release installed while ours already runs. Uninstalled, the APIService is gone
	// (never created by the adapter); installed again, it is claimed.
	if _, err := runHelm(t, kc, "uninstall", "keda", "--namespace", "keda", "--wait"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the external APIService gone with KEDA's release", func() (bool, string) {
		_, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	time.Sleep(time.Second)
	if _, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the adapter created the APIService KEDA's release left: %v", err)
	}
	if r := adapterReadyz(t, port); !strings.Contains(r, "[-]apiservices failed") {
		t.Errorf("/readyz?verbose without the APIService:\n%s", r)
	}
	installed := time.Now()
	if _, err := runHelm(t, kc, "install", "keda", kedaChart, "--namespace", "keda"); err != nil {
		t.Fatalf("KEDA's release after ours: %v", err)
	}
	eventually(t, 10*time.Second, "KEDA's new APIService claimed", func() (bool, string) {
		a, err := agg.ApiregistrationV1().APIServices().Get(ctx, externalAPIService, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return held(a), fmt.Sprintf("service %+v", a.Spec.Service)
	})
	t.Logf("KEDA's release installed after ours: held %s after helm install started", time.Since(installed).Round(time.Millisecond))
}

// runBesideAdapter runs the adapter as the Deployment promql-adapter of our release in custom-metrics would run
// it: its arguments, the rule file of its ConfigMap, the Secrets its volumes mount under /etc/promql-adapter/ (as
// the kubelet would), and its ServiceAccount's credentials; as a process on 127.0.0.1, logging to logs/logName
// in the stack's work dir. The test's end kills it (by its process group) and prints its log's end on failure.
func runBesideAdapter(ctx context.Context, t *testing.T, cl *localcluster.Cluster, kube kubernetes.Interface, logName string) {
	t.Helper()
	d, err := kube.AppsV1().Deployments("custom-metrics").Get(ctx, "promql-adapter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kube.CoreV1().ConfigMaps("custom-metrics").Get(ctx, "promql-adapter-rules", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules", "rules.yaml"), []byte(cm.Data["rules.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	for _, m := range pod.Containers[0].VolumeMounts {
		if !strings.HasPrefix(m.MountPath, "/etc/promql-adapter/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			sec, err := kube.CoreV1().Secrets("custom-metrics").Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && ptr.Deref(v.Secret.Optional, false) {
				continue
			}
			if err != nil {
				t.Fatalf("volume %s of the adapter's pod: %v", v.Name, err)
			}
			to := filepath.Join(dir, strings.TrimPrefix(m.MountPath, "/etc/promql-adapter/"))
			if err := os.MkdirAll(to, 0o755); err != nil {
				t.Fatal(err)
			}
			for k, b := range sec.Data {
				if err := os.WriteFile(filepath.Join(to, k), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	saKC := saKubeconfig(ctx, t, cl, kube, "custom-metrics", pod.ServiceAccountName)
	var args []string
	for _, a := range pod.Containers[0].Args {
		if strings.HasPrefix(a, "--tls-cert-file") || strings.HasPrefix(a, "--tls-private-key-file") {
			t.Fatalf("tls.mode controller renders %s", a)
		}
		args = append(args, strings.ReplaceAll(a, "/etc/promql-adapter/", dir+"/"))
	}
	args = append(args, "--bind-address=127.0.0.1", "--lister-kubeconfig="+saKC, "--authentication-kubeconfig="+saKC, "--authorization-kubeconfig="+saKC)
	t.Logf("the chart's adapter arguments: %q", args)
	startAdapterProc(t, filepath.Join(st.WorkDir(), "promql-adapter"), args, filepath.Join(st.WorkDir(), "logs", logName), 0, 6144)
}

// besideKEDAValues are our chart's values beside KEDA's release: the external APIService left to KEDA's chart
// (the controller claims it), the APIServices routed to the adapter process on 127.0.0.1 (an ExternalName
// Service), default TLS mode (controller).
func besideKEDAValues(t *testing.T, port int) string {
	t.Helper()
	v := map[string]any{
		"image":      map[string]any{"repository": "promql-adapter", "tag": "e2e"},
		"securePort": port,
		"service":    map[string]any{"type": "ExternalName", "externalName": "127.0.0.1", "port": port},
		"apiService": map[string]any{"ownedElsewhere": []string{externalAPIService}},
		"prometheus": map[string]any{"url": st.Prom.URL()},
	}
	return valuesFile(t, v)
}

// adapterReadyz is the adapter's /readyz?verbose (open without credentials).
func adapterReadyz(t *testing.T, port int) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // our own test server
	resp, err := c.Get("https://127.0.0.1:" + strconv.Itoa(port) + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
